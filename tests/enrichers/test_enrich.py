"""Rules the conformance scenarios cannot show: device keys, ids, time, duplicates, replays."""

from __future__ import annotations

import hashlib
import re
import uuid

from enrichers import (
    DEFAULT_POLICY,
    EMPTY_DEVICE,
    DeviceState,
    Policy,
    RawEvent,
    Source,
    Status,
    enrich_event,
    resolve_device,
)
from enrichers.delivery import Delivery, is_retry
from enrichers.enrich import EventOutcome
from enrichers.ids import derive_uuid4, message_id_digest
from enrichers.profiles import coalesce_profiles
from enrichers.timestamps import format_iso_ms, parse_iso_ms
from tests.rules import Rules, raw

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
T0 = parse_iso_ms("2024-03-01T09:00:00.000Z") or 0


def run(
    events: list[RawEvent],
    key: str = "device-1",
    state: DeviceState = EMPTY_DEVICE,
    policy: Policy = DEFAULT_POLICY,
    first_offset: int = 0,
    partition: int = 0,
) -> tuple[DeviceState, list[EventOutcome]]:
    """Events of one device (record key ``key``) from ``state``, at offsets from
    ``first_offset`` and times from T0."""
    rules = Rules(policy)
    rules.states[key] = state
    outcomes = [
        rules.apply(event, key, offset, T0 + offset, partition)
        for offset, event in enumerate(events, start=first_offset)
    ]
    return rules.states[key], outcomes


def test_device_is_the_record_key_when_present() -> None:
    event = raw(type="track", event="e", anonymousId="a1")
    assert resolve_device(event, Source("t", 0, 0, "cookie-7", 0)).key == "cookie-7"


def test_device_falls_back_to_anonymous_id_then_user_id() -> None:
    assert (
        resolve_device(raw(type="page", anonymousId="a1", userId="u"), Source("t", 0, 0, "", 0)).key
        == "a1"
    )
    assert resolve_device(raw(type="page", userId=12), Source("t", 0, 0, None, 0)).key == "12"


def test_new_visitor_is_named_by_the_anonymous_id_it_gets() -> None:
    event = raw(type="track", event="e", messageId="m-1")
    source = Source("events.raw", 0, 0, None, T0)
    device = resolve_device(event, source)
    assert device.new_visitor
    outcome = enrich_event(EMPTY_DEVICE, event, device, source, DEFAULT_POLICY)
    assert outcome.warehouse is not None
    assert outcome.warehouse["anonymousId"] == device.key


def test_r5_generated_anonymous_id_is_uuid4_and_deterministic() -> None:
    events = [raw(type="track", event="e"), raw(type="reset"), raw(type="page")]
    _, first = run(events)
    _, second = run(events)
    ids = [o.warehouse["anonymousId"] for o in first if o.warehouse]
    assert ids == [o.warehouse["anonymousId"] for o in second if o.warehouse]
    assert all(UUID4.match(i) for i in ids)
    assert ids[0] != ids[1]  # R10: reset gives a new one


def test_r5_r32_derived_ids_are_those_of_every_earlier_version() -> None:
    """A replay derives the ids the first run wrote (issue 21 formats them without
    ``uuid.UUID``): BLAKE2b of the parts, as a version-4 UUID."""
    for parts in (("anonymousId", "device-1", "m-1", "0"), ("messageId", "raw", "3", "41")):
        digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()
        assert derive_uuid4(*parts) == str(uuid.UUID(bytes=digest, version=4))


def test_r5_id_after_forget_was_never_seen_on_the_device() -> None:
    # the same messageId twice (beyond the R33 window it is no duplicate) still gets a new id
    events = [raw(type="track", event="e", messageId="same"), raw(type="forget")]
    events += [raw(type="page", messageId=f"p{i}") for i in range(70)]
    events += [raw(type="forget"), raw(type="track", event="e", messageId="same")]
    _, outcomes = run(events)
    ids = [o.warehouse["anonymousId"] for o in outcomes if o.warehouse]
    assert ids[-1] not in ids[:-1]


def test_r32_missing_message_id_is_derived_from_the_source_position() -> None:
    _, (outcome,) = run([raw(type="track", event="e")], first_offset=41)
    _, (again,) = run([raw(type="track", event="e")], first_offset=41)
    _, (other,) = run([raw(type="track", event="e")], first_offset=42)
    assert outcome.warehouse and again.warehouse and other.warehouse
    assert outcome.warehouse["messageId"] == again.warehouse["messageId"]
    assert outcome.warehouse["messageId"] != other.warehouse["messageId"]


def test_r23_options_message_id_goes_to_the_top_level() -> None:
    _, (outcome,) = run([raw(type="track", event="e", messageId="m", options={"messageId": "o"})])
    assert outcome.warehouse and outcome.warehouse["messageId"] == "o"


def test_r33_retry_of_a_recent_message_id_changes_nothing_and_emits_nothing() -> None:
    first = raw(type="identify", userId="u1", traits={"a": 1}, messageId="m-1")
    retry = raw(type="identify", userId="u2", traits={"b": 2}, messageId="m-1")
    state, outcomes = run([first, retry])
    assert [o.status for o in outcomes] == [Status.MESSAGE, Status.DUPLICATE]
    assert outcomes[1].warehouse is None
    assert state.uid == "u1" and dict(state.utraits) == {"a": 1}


def test_r33_window_is_the_last_64_message_ids() -> None:
    events = [raw(type="page", messageId=f"m{i}") for i in range(65)]
    state, _ = run(events)
    _, (old,) = run([raw(type="page", messageId="m0")], state=state, first_offset=100)
    _, (recent,) = run([raw(type="page", messageId="m1")], state=state, first_offset=100)
    assert old.status is Status.MESSAGE
    assert recent.status is Status.DUPLICATE


def test_r33_a_digest_is_found_only_where_one_starts_in_the_window() -> None:
    """The window is 8-byte digests end to end: bytes that straddle two of them are not one."""
    first, second = message_id_digest("m-1"), message_id_digest("m-2")
    state = DeviceState(recent=first + second)
    straddling = first[4:] + second[:4]
    assert straddling not in (first, second)
    assert not is_retry(state, Delivery("other", straddling))
    assert is_retry(state, Delivery("m-2", second))
    assert is_retry(DeviceState(recent=straddling + second), Delivery("m-2", second))
    assert not is_retry(state, Delivery("m-3", None))  # no explicit messageId: never a retry


def test_r34_event_at_or_below_the_applied_offset_is_not_applied_again() -> None:
    state, _ = run([raw(type="identify", userId="u1")], first_offset=10)
    _, (replayed,) = run([raw(type="identify", userId="u2")], state=state, first_offset=10)
    assert replayed.status is Status.ALREADY_APPLIED
    assert replayed.state == state and replayed.warehouse is None
    _, (other_partition,) = run(
        [raw(type="identify", userId="u2")], state=state, first_offset=10, partition=1
    )
    assert other_partition.status is Status.MESSAGE


def test_r4_device_idle_past_its_ttl_starts_empty() -> None:
    policy = Policy(device_ttl_days=1)
    later = "2024-03-03T09:00:00.000Z"
    state, _ = run(
        [raw(type="identify", userId="u1", traits={"a": 1}, receivedAt="2024-03-01T09:00:00.000Z")],
        policy=policy,
    )
    _, (outcome,) = run(
        [raw(type="track", event="e", receivedAt=later)], state=state, policy=policy, first_offset=5
    )
    assert outcome.warehouse is not None
    assert outcome.warehouse["userId"] is None
    assert outcome.warehouse["anonymousId"] != state.aid


def test_r1_device_within_its_ttl_keeps_its_identity() -> None:
    policy = Policy(device_ttl_days=1)
    state, _ = run(
        [raw(type="identify", userId="u1", receivedAt="2024-03-01T09:00:00.000Z")], policy=policy
    )
    _, (outcome,) = run(
        [raw(type="track", event="e", receivedAt="2024-03-01T20:00:00.000Z")],
        state=state,
        policy=policy,
        first_offset=5,
    )
    assert outcome.warehouse and outcome.warehouse["userId"] == "u1"


def test_r31_timestamp_corrects_client_clock_skew() -> None:
    _, (outcome,) = run(
        [
            raw(
                type="track",
                event="e",
                timestamp="2024-03-01T10:00:00.000Z",
                sentAt="2024-03-01T10:00:05.000Z",
                receivedAt="2024-03-01T09:00:07.000Z",
            )
        ]
    )
    message = outcome.warehouse
    assert message is not None
    assert message["receivedAt"] == "2024-03-01T09:00:07.000Z"
    assert message["originalTimestamp"] == "2024-03-01T10:00:00.000Z"
    assert message["timestamp"] == "2024-03-01T09:00:02.000Z"


def test_r31_without_times_the_record_timestamp_is_used() -> None:
    _, (outcome,) = run([raw(type="track", event="e")])
    assert outcome.warehouse is not None
    assert outcome.warehouse["receivedAt"] == "2024-03-01T09:00:00.000Z"
    assert outcome.warehouse["timestamp"] == outcome.warehouse["receivedAt"]


def test_r31_times_are_normalised_to_utc_milliseconds() -> None:
    _, (outcome,) = run([raw(type="page", timestamp="2024-03-01T11:00:00+02:00")])
    assert outcome.warehouse and outcome.warehouse["timestamp"] == "2024-03-01T09:00:00.000Z"


def test_r29_control_events_emit_nothing() -> None:
    controls = ["reset", "forget", "expireCookies", "setUserId", "setGroupTraits"]
    _, outcomes = run([raw(type=t) for t in controls])
    assert all(o.status is Status.CONTROL and o.warehouse is None for o in outcomes)


def test_r25_destinations_have_no_context_traits_and_no_enrichment() -> None:
    _, (outcome,) = run([raw(type="track", event="e", options={"traits": {"plan": "pro"}})])
    assert outcome.warehouse and outcome.destinations
    assert outcome.warehouse["context"]["traits"] == {"plan": "pro"}
    assert "traits" not in outcome.destinations["context"]
    assert "_enrichment" not in outcome.destinations
    assert "_enrichment" in outcome.warehouse


def test_r29_all_false_without_named_destination_stays_off_destinations() -> None:
    _, (off, named) = run(
        [
            raw(type="track", event="e", integrations={"All": False}),
            raw(type="track", event="e", integrations={"All": False, "Mixpanel": True}),
        ]
    )
    assert off.warehouse is not None and off.destinations is None
    assert named.destinations is not None
    assert named.destinations["integrations"] == {"All": False, "Mixpanel": True}


def test_output_never_carries_options_value_or_request_ip() -> None:
    _, (outcome,) = run(
        [raw(type="track", event="e", options={"ip": "1.2.3.4"}, requestIp="5.6.7.8", value=1)]
    )
    assert outcome.warehouse and outcome.destinations
    for message in (outcome.warehouse, outcome.destinations):
        assert not {"options", "value", "requestIp"} & message.keys()
        assert message["context"]["ip"] == "1.2.3.4"


def test_enrichment_names_device_source_and_policy() -> None:
    _, (outcome,) = run([raw(type="track", event="e")], first_offset=7)
    assert outcome.warehouse is not None
    assert outcome.warehouse["_enrichment"] == {
        "device": "device-1",
        "source": "events.raw/0/7",
        "restored": False,
        "policy": DEFAULT_POLICY.fingerprint,
        "anonymousId": "generated",  # R5: a new visitor's, from the messageId
    }


def test_r35_traits_beyond_the_cache_bound_still_give_a_message_with_the_calls_traits() -> None:
    from enrichers.bounds import MAX_CACHED_TRAIT_KEYS

    half = MAX_CACHED_TRAIT_KEYS // 2 + 1
    first = raw(type="identify", userId="u", traits={f"a{i}": i for i in range(half)})
    second_traits = {f"b{i}": i for i in range(half)}
    second = raw(type="identify", userId="u", traits=second_traits)
    third = raw(type="identify", userId="u", traits={"plan": "pro"})
    state, (ok, bounded, after) = run([first, second, third])
    assert ok.status is Status.MESSAGE and ok.not_cached is None
    assert bounded.status is Status.MESSAGE and bounded.warehouse is not None
    assert bounded.warehouse["traits"] == second_traits  # the call's own traits
    assert bounded.warehouse["_enrichment"]["traitsNotCached"] == "user"  # marked
    assert bounded.not_cached == "user"  # counted by the worker
    # the cache kept its merge of the first; later identifies still merge (traits not frozen)
    assert after.warehouse is not None and after.warehouse["traits"]["plan"] == "pro"
    assert len(state.utraits) == half + 1


def test_r35_a_new_user_whose_traits_exceed_the_bound_leaves_no_traits_of_the_previous() -> None:
    big = {f"k{i}": i for i in range(300)}  # over the bound of 256 keys
    state, (_, second) = run(
        [
            raw(type="identify", userId="u1", traits={"email": "one@example.com"}),
            raw(type="identify", userId="u2", traits=big),
        ]
    )
    assert second.warehouse is not None and second.warehouse["traits"] == big
    assert state.uid == "u2" and dict(state.utraits) == {}


def test_r35_set_traits_over_32_kb_leave_the_cache_and_group_calls_go_on() -> None:
    big = "x" * 20_000
    state, outcomes = run(
        [raw(type="setGroupTraits", value={"a": big}), raw(type="group", traits={"b": big})]
    )
    assert [o.status for o in outcomes] == [Status.CONTROL, Status.MESSAGE]
    assert outcomes[1].not_cached == "group"
    assert dict(state.gtraits) == {"a": big}


def test_profile_links_are_written_once_a_day_per_device() -> None:
    """The user -> anonymousId and user -> device links (R35, R39) are sorted sets by last seen
    in Redis: a device that linked them earlier the same UTC day sends only its last seen, a
    new anonymousId or a new day links again."""
    rules = Rules()
    day = 1_764_374_400_000  # 2025-11-29T00:00:00Z
    at = [day + 3_600_000, day + 7_200_000, day + 9_000_000, day + 86_400_000 + 60_000]
    identify = raw(type="identify", userId="u1", receivedAt=format_iso_ms(at[0]))
    first = rules.apply(identify, "dev-1", 1)
    second = rules.apply(raw(type="track", event="E", receivedAt=format_iso_ms(at[1])), "dev-1", 2)
    other_aid = raw(type="track", event="E", anonymousId="a2", receivedAt=format_iso_ms(at[2]))
    third = rules.apply(other_aid, "dev-1", 3)
    next_day = rules.apply(raw(type="page", receivedAt=format_iso_ms(at[3])), "dev-1", 4)
    updates = [o.user_update for o in (first, second, third, next_day)]
    assert all(u is not None and u.user_id == "u1" for u in updates)
    assert [u.linked for u in updates if u is not None] == [False, True, False, False]
    users, _ = coalesce_profiles([u for u in updates[:2] if u is not None], [])
    merge = users["u1"]  # the linked update moved last seen, and listed nothing
    assert merge.last_seen_ms == at[1]
    assert merge.devices == {"dev-1": at[0]}
    assert list(merge.anonymous_ids.values()) == [at[0]]
