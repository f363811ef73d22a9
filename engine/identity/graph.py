"""The identity graph on integer arrays: exactly the spec's per-event algorithm, mostly in bulk.

Pure (numpy / scipy / Python): :mod:`engine.identity.resolve` turns events into integer arrays
and writes the result. Events are numbered by canonical rank ``(timestamp, message_id)``;
identifiers by an arbitrary index; a profile is named by the rank of the event that created it,
so "the oldest profile" is simply the smallest number.

Why bulk resolution is exact
----------------------------
Profiles never span connected components of the identifier graph (an event only ever touches
profiles owning its own identifiers), so each component resolves on its own. In a component where
every type has at most ``limit`` distinct values, no limit check can ever fail (every set the
algorithm checks is a subset of the component), so no identifier is ever dropped and the algorithm
reduces to union-find in canonical order:

* an identifier is gained by the first event that carries it (its gain time);
* an event creates a profile iff all its identifiers are new; the component ends as one profile,
  created by its first event (the oldest profile survives every merge);
* merges: each identifier is attached, at its first event, to a profile that already holds another
  identifier of that event (or is the creating profile); following these attachments (pointer
  jumping, vectorised) labels each identifier with the profile that first held it. A merge can only
  happen at an event whose already-known identifiers carry two or more labels; those few
  ``(event, label, label)`` edges, de-duplicated per label pair, are replayed by a small union-find.

Only components that could break a limit are replayed event by event (:func:`_replay`), and even
there an event whose identifiers all belong to one profile already is settled without a check (a
profile alone satisfies its limits, since periodic counts only shrink as time advances, unless it
was created over a limit: the spec creates profiles without a check, so such a profile is checked
in full until a checked merge or gain brings it within its limits).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

NO = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphInput:
    """Identifier occurrences as integer arrays.

    Parameters
    ----------
    row_event
        Canonical rank of the event of each occurrence; sorted ascending, every rank in
        ``0 .. len(event_ts) - 1`` present; within an event, rows in priority order (type
        priority, then value) and without repeats.
    row_ident
        Identifier index of each occurrence; every identifier in ``0 .. len(ident_type) - 1`` occurs.
    ident_type
        Type index of each identifier (0 = highest priority).
    event_ts
        Event time in microseconds, by rank.
    limits
        Limit per type index.
    periods
        Period per type index in microseconds, ``-1`` for ``ever``.
    """

    row_event: np.ndarray
    row_ident: np.ndarray
    ident_type: np.ndarray
    event_ts: np.ndarray
    limits: np.ndarray
    periods: np.ndarray


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphResult:
    """Resolution on integer arrays; profiles are named by their creating event's rank."""

    event_profile: np.ndarray  # final profile per event rank, NO when unresolved
    ident_profile: np.ndarray  # final owner per identifier, NO when never attached
    ident_gain: np.ndarray  # rank of the event that attached it, NO when never attached
    merge_from: np.ndarray
    merge_into: np.ndarray
    merge_event: np.ndarray
    violation_event: np.ndarray
    violation_type: np.ndarray  # the type whose limit would break (highest priority one)
    violation_ident: np.ndarray  # the dropped identifier
    ident_component: np.ndarray  # candidate component per identifier (limits ignored), 0-based
    event_component: np.ndarray  # candidate component per event rank
    components: int
    replayed_events: int
    #: the profile each event joined when it was processed (NO when unresolved): following it
    #: through the merges up to an instant gives the event's profile as of that instant
    event_joined: np.ndarray


def _over_limits(data: GraphInput, comp: np.ndarray, n_comp: int) -> np.ndarray:
    """Per component: whether it holds more identifiers of some type than that type's limit, the
    only components a limit can touch (the others resolve in bulk, without the replay)."""
    unsafe = np.zeros(n_comp, dtype=bool)
    types = np.asarray(data.ident_type, dtype=np.int64)
    for t, limit in enumerate(np.asarray(data.limits).tolist()):
        unsafe |= np.bincount(comp[types == t], minlength=n_comp) > limit
    return unsafe


def resolve_graph(data: GraphInput, *, bulk: bool = True) -> GraphResult:
    """Resolve every event; ``bulk=False`` replays every component (a cross-check for tests)."""
    row_ev = np.asarray(data.row_event, dtype=np.int64)
    row_id = np.asarray(data.row_ident, dtype=np.int64)
    n_ev = len(data.event_ts)
    n_id = len(data.ident_type)
    empty = np.zeros(0, dtype=np.int64)
    if n_ev == 0:
        return GraphResult(
            event_profile=empty, ident_profile=np.full(n_id, NO), ident_gain=np.full(n_id, NO),
            merge_from=empty, merge_into=empty, merge_event=empty, violation_event=empty,
            violation_type=empty, violation_ident=empty, ident_component=np.full(n_id, NO),
            event_component=empty,
            components=0, replayed_events=0, event_joined=empty,
        )
    starts = np.flatnonzero(np.r_[True, row_ev[1:] != row_ev[:-1]])
    if len(starts) != n_ev:
        raise ValueError("every event rank needs at least one identifier row")
    ev_hub = row_id[starts]
    hub = ev_hub[row_ev]
    graph = coo_matrix((np.ones(len(row_id), dtype=np.int8), (hub, row_id)), shape=(n_id, n_id))
    n_comp, comp = connected_components(graph.tocsr(), directed=False)
    comp = comp.astype(np.int64)

    unsafe_comp = _over_limits(data, comp, n_comp) if bulk else np.ones(n_comp, dtype=bool)
    ev_comp = comp[ev_hub]
    ev_unsafe = unsafe_comp[ev_comp]

    event_profile = np.full(n_ev, NO, dtype=np.int64)
    ident_profile = np.full(n_id, NO, dtype=np.int64)
    ident_gain = np.full(n_id, NO, dtype=np.int64)

    # -- bulk: components that cannot break a limit -------------------------------------------
    first = np.full(n_id, n_ev, dtype=np.int64)
    np.minimum.at(first, row_id, row_ev)
    comp_first = np.full(n_comp, n_ev, dtype=np.int64)
    np.minimum.at(comp_first, ev_comp, np.arange(n_ev, dtype=np.int64))
    safe_ev = ~ev_unsafe
    event_profile[safe_ev] = comp_first[ev_comp[safe_ev]]
    safe_id = ~unsafe_comp[comp]
    ident_profile[safe_id] = comp_first[comp[safe_id]]
    ident_gain[safe_id] = first[safe_id]
    merge_from, merge_into, merge_event, label = _bulk_merges(row_ev, row_id, first, safe_ev, n_ev, n_id)
    # the profile an event joined: the union-find label of any of its identifiers (the labels'
    # roots at the event are the profile it joined; a new profile's label is its creator)
    event_joined = np.full(n_ev, NO, dtype=np.int64)
    event_joined[safe_ev] = label[ev_hub[safe_ev]]

    # -- replay: components where a limit could break ------------------------------------------
    replay = _replay(data, row_ev, row_id, starts, ev_unsafe)
    if replay.events:
        event_profile[replay.events] = replay.profiles
        ident_profile[replay.idents] = replay.ident_profiles
        ident_gain[replay.idents] = replay.ident_gains
        event_joined[replay.events] = replay.joined
    order = np.argsort(np.r_[merge_event, replay.merge_event], kind="stable")
    return GraphResult(
        event_profile=event_profile,
        ident_profile=ident_profile,
        ident_gain=ident_gain,
        merge_from=np.r_[merge_from, replay.merge_from].astype(np.int64)[order],
        merge_into=np.r_[merge_into, replay.merge_into].astype(np.int64)[order],
        merge_event=np.r_[merge_event, replay.merge_event].astype(np.int64)[order],
        violation_event=np.asarray(replay.violation_event, dtype=np.int64),
        violation_type=np.asarray(replay.violation_type, dtype=np.int64),
        violation_ident=np.asarray(replay.violation_ident, dtype=np.int64),
        ident_component=comp,
        event_component=ev_comp,
        components=int(n_comp),
        replayed_events=len(replay.events),
        event_joined=event_joined,
    )


def _bulk_merges(
    row_ev: np.ndarray, row_id: np.ndarray, first: np.ndarray, safe_ev: np.ndarray, n_ev: int, n_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merges of the limit-safe components (see the module docstring), and each identifier's
    union-find label (the creating event of the profile that first held it)."""
    row_old = first[row_id] < row_ev
    has_old = np.zeros(n_ev, dtype=bool)
    has_old[row_ev[row_old]] = True
    # any already-known identifier of the event anchors the event's new identifiers
    anchor = np.full(n_ev, NO, dtype=np.int64)
    anchor[row_ev[row_old]] = row_id[row_old]
    ptr = np.where(has_old[first], anchor[first], np.arange(n_id, dtype=np.int64))
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    label = first[ptr]  # the creating event of the profile that first held the identifier

    keep = row_old & safe_ev[row_ev]
    ev = row_ev[keep]
    lab = label[row_id[keep]]
    empty = np.zeros(0, dtype=np.int64)
    if len(ev) == 0:
        return empty, empty, empty, label
    seg = np.flatnonzero(np.r_[True, ev[1:] != ev[:-1]])
    lo = np.minimum.reduceat(lab, seg)
    hi = np.maximum.reduceat(lab, seg)
    multi = np.repeat(lo != hi, np.diff(np.r_[seg, len(ev)]))
    if not multi.any():
        return empty, empty, empty, label
    edges = (
        pl.DataFrame({"event": ev[multi], "label": lab[multi]})
        .with_columns(hub=pl.col("label").min().over("event"))
        .filter(pl.col("label") != pl.col("hub"))
        .group_by("hub", "label")
        .agg(pl.col("event").min())
        .sort("event", "hub", "label")
    )
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while (up := parent.get(root, root)) != root:
            root = up
        while x != root:
            parent[x], x = root, parent.get(x, x)
        return root

    out_from: list[int] = []
    out_into: list[int] = []
    out_event: list[int] = []
    events = edges["event"].to_list()
    hubs = edges["hub"].to_list()
    labels = edges["label"].to_list()
    i, n = 0, len(events)
    while i < n:
        e = events[i]
        roots = {find(hubs[i])}
        while i < n and events[i] == e:
            roots.add(find(labels[i]))
            i += 1
        if len(roots) > 1:
            into = min(roots)
            for r in sorted(roots):
                if r != into:
                    parent[r] = into
                    out_from.append(r)
                    out_into.append(into)
                    out_event.append(e)
    return (
        np.asarray(out_from, dtype=np.int64),
        np.asarray(out_into, dtype=np.int64),
        np.asarray(out_event, dtype=np.int64),
        label,
    )


@dataclass(slots=True)
class _Replayed:
    events: list[int]
    profiles: list[int]
    idents: list[int]
    ident_profiles: list[int]
    ident_gains: list[int]
    merge_from: list[int]
    merge_into: list[int]
    merge_event: list[int]
    violation_event: list[int]
    violation_type: list[int]
    violation_ident: list[int]
    state_final: list[int]
    joined: list[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphState:
    """Profiles already resolved, to continue the algorithm from (see :func:`continue_graph`).

    Parameters
    ----------
    profiles
        How many; they are numbered ``0 .. profiles - 1`` in canonical order of their creating
        events, all older than every event to continue with.
    ident
        Identifier index (of the :class:`GraphInput`) of each identifier they hold.
    owner
        The profile holding it.
    gain_ts
        Its gain time in microseconds.
    """

    profiles: int
    ident: np.ndarray
    owner: np.ndarray
    gain_ts: np.ndarray


@dataclass(frozen=True, slots=True, kw_only=True)
class Continued:
    """The result of :func:`continue_graph`.

    Profiles are numbered as in :class:`GraphState` below ``state.profiles``; a profile created
    by the event of rank ``e`` is ``state.profiles + e``. Identifier arrays cover only the
    identifiers the new events attached.
    """

    event_profile: np.ndarray  # final profile per new event, NO when unresolved
    profile_final: np.ndarray  # final profile of each state profile (itself unless merged away)
    ident: np.ndarray
    ident_profile: np.ndarray
    ident_gain: np.ndarray  # rank of the new event that attached it
    merge_from: np.ndarray
    merge_into: np.ndarray
    merge_event: np.ndarray
    violation_event: np.ndarray
    violation_type: np.ndarray
    violation_ident: np.ndarray
    event_joined: np.ndarray  # profile each new event joined when processed, NO when unresolved


def continue_graph(data: GraphInput, state: GraphState, *, bulk: bool = True) -> Continued:
    """The spec's algorithm continued from ``state`` over events all later than it.

    Exact because the algorithm's state after the old events is exactly the profiles, their
    identifiers and gain times (periodic counts are derived from gain times); the state's
    profiles are checked in full by the first event touching them, as the spec does (one of
    them may have been created over a limit).

    Components (identifiers linked by a new event or held by one stored profile) where every
    type has at most ``limit`` distinct values, held and new together, cannot fail a check
    (every set checked is a subset, and a stored profile over a limit makes its component
    unsafe), so they resolve in bulk (:func:`_continue_bulk`); the others replay event by event
    from the state. ``bulk=False`` replays everything (a cross-check for tests).
    """
    row_ev = np.asarray(data.row_event, dtype=np.int64)
    row_id = np.asarray(data.row_ident, dtype=np.int64)
    n_ev = len(data.event_ts)
    starts = np.flatnonzero(np.r_[True, row_ev[1:] != row_ev[:-1]]) if n_ev else np.zeros(0, np.int64)
    if len(starts) != n_ev:
        raise ValueError("every event rank needs at least one identifier row")
    held = np.asarray(state.ident, dtype=np.int64)
    owner = np.asarray(state.owner, dtype=np.int64)
    ev_unsafe = np.ones(n_ev, dtype=bool)
    prof_safe = np.zeros(state.profiles, dtype=bool)
    if bulk and n_ev:
        n_id = len(data.ident_type)
        # one hub identifier per event and per stored profile links the component
        prof_hub = np.full(state.profiles, NO, dtype=np.int64)
        prof_hub[owner] = held
        src = np.r_[row_id[starts][row_ev], prof_hub[owner]]
        dst = np.r_[row_id, held]
        graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n_id, n_id))
        n_comp, comp = connected_components(graph.tocsr(), directed=False)
        unsafe = _over_limits(data, comp, n_comp)
        ev_unsafe = unsafe[comp[row_id[starts]]]
        prof_safe = (prof_hub >= 0) & ~unsafe[comp[np.maximum(prof_hub, 0)]]
    keep = ~prof_safe[owner]
    rep = _replay(
        data, row_ev, row_id, starts, ev_unsafe,
        state=GraphState(profiles=state.profiles, ident=held[keep], owner=owner[keep],
                         gain_ts=np.asarray(state.gain_ts, dtype=np.int64)[keep]),
    )
    i64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    event_profile = np.full(n_ev, NO, dtype=np.int64)
    event_profile[rep.events] = rep.profiles
    event_joined = np.full(n_ev, NO, dtype=np.int64)
    event_joined[rep.events] = rep.joined
    profile_final = i64(rep.state_final)
    parts = [(i64(rep.merge_from), i64(rep.merge_into), i64(rep.merge_event))]
    idents = [(i64(rep.idents), i64(rep.ident_profiles), i64(rep.ident_gains))]
    if not ev_unsafe.all():
        b = _continue_bulk(data, row_ev, row_id, ~ev_unsafe, np.flatnonzero(prof_safe), held, owner,
                           state.profiles)
        event_profile[~ev_unsafe] = b.event_profile
        event_joined[~ev_unsafe] = b.event_joined
        profile_final[prof_safe] = b.profile_final
        parts.append((b.merge_from, b.merge_into, b.merge_event))
        idents.append((b.ident, b.ident_profile, b.ident_gain))
    merge_from, merge_into, merge_event = (np.concatenate(x) for x in zip(*parts))
    order = np.argsort(merge_event, kind="stable")
    ident, ident_profile, ident_gain = (np.concatenate(x) for x in zip(*idents))
    return Continued(
        event_profile=event_profile,
        profile_final=profile_final,
        ident=ident,
        ident_profile=ident_profile,
        ident_gain=ident_gain,
        merge_from=merge_from[order],
        merge_into=merge_into[order],
        merge_event=merge_event[order],
        violation_event=i64(rep.violation_event),
        violation_type=i64(rep.violation_type),
        violation_ident=i64(rep.violation_ident),
        event_joined=event_joined,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _BulkContinued:
    event_profile: np.ndarray  # per safe event
    event_joined: np.ndarray
    profile_final: np.ndarray  # per safe stored profile
    merge_from: np.ndarray
    merge_into: np.ndarray
    merge_event: np.ndarray
    ident: np.ndarray
    ident_profile: np.ndarray
    ident_gain: np.ndarray


def _continue_bulk(
    data: GraphInput, row_ev: np.ndarray, row_id: np.ndarray, safe_ev: np.ndarray,
    profs: np.ndarray, held: np.ndarray, owner: np.ndarray, n_prof: int,
) -> _BulkContinued:
    """The limit-safe components of a continuation, by :func:`resolve_graph`'s bulk path: each
    stored profile becomes a virtual event before the new ones, carrying its identifiers (it
    creates exactly that profile, and profiles of the state hold disjoint identifiers), numbered
    in creation order, so the oldest profile still survives every merge and is named by its
    number; new profiles are named ``n_prof + rank`` as in :class:`Continued`."""
    evs = np.flatnonzero(safe_ev)
    k = len(profs)
    in_prof = np.isin(owner, profs)
    ev_rows = safe_ev[row_ev]
    rank = np.r_[np.searchsorted(profs, owner[in_prof]), k + np.searchsorted(evs, row_ev[ev_rows])]
    ident_all = np.r_[held[in_prof], row_id[ev_rows]]
    used, local = np.unique(ident_all, return_inverse=True)  # identifier order is priority order
    order = np.lexsort((local, rank))
    ts = np.asarray(data.event_ts, dtype=np.int64)
    sub = GraphInput(
        row_event=rank[order],
        row_ident=local[order],
        ident_type=np.asarray(data.ident_type, dtype=np.int64)[used],
        event_ts=np.r_[np.full(k, ts[evs].min() if len(evs) else 0, dtype=np.int64), ts[evs]],
        limits=data.limits,
        periods=data.periods,
    )
    r = resolve_graph(sub)
    # a local rank < k is the stored profile profs[rank]; else the new event evs[rank - k]
    name = np.r_[profs, n_prof + evs]
    attached = np.flatnonzero(r.ident_gain >= k)  # identifiers the new events attached
    return _BulkContinued(
        event_profile=name[r.event_profile[k:]],
        event_joined=name[r.event_joined[k:]],
        profile_final=name[r.event_profile[:k]],
        merge_from=name[r.merge_from],
        merge_into=name[r.merge_into],
        merge_event=evs[r.merge_event - k],
        ident=used[attached],
        ident_profile=name[r.ident_profile[attached]],
        ident_gain=evs[r.ident_gain[attached] - k],
    )


def _replay(
    data: GraphInput,
    row_ev: np.ndarray,
    row_id: np.ndarray,
    starts: np.ndarray,
    ev_unsafe: np.ndarray,
    *,
    state: GraphState | None = None,
) -> _Replayed:
    """The spec's per-event algorithm, literally, for the events of the given components
    (from ``state`` when given: the event of rank ``e`` then creates profile ``state.profiles + e``)."""
    evs = np.flatnonzero(ev_unsafe)
    out = _Replayed([], [], [], [], [], [], [], [], [], [], [], [], [])
    if len(evs) == 0 and state is None:
        return out
    sizes = np.diff(np.r_[starts, len(row_ev)])[evs]
    ids_flat = row_id[ev_unsafe[row_ev]].tolist()
    bounds = np.r_[0, np.cumsum(sizes)].tolist()
    ts_list = np.asarray(data.event_ts, dtype=np.int64)[evs].tolist()
    type_of = np.asarray(data.ident_type, dtype=np.int64).tolist()
    limits = np.asarray(data.limits, dtype=np.int64).tolist()
    periods = np.asarray(data.periods, dtype=np.int64).tolist()

    owner: dict[int, int] = {}  # identifier -> profile (maybe merged since: use find)
    parent: dict[int, int] = {}  # profile -> the profile it was merged into (roots: itself)
    gains: dict[int, dict[int, list[int]]] = {}  # live profile -> type -> sorted gain times
    gain_event: dict[int, int] = {}
    ev_prof: list[int] = []
    # profiles created over a limit: the shortcut below (a profile alone satisfies its limits)
    # does not hold for them until a checked merge or gain
    unchecked: set[int] = set()
    first_new = 0
    if state is not None:
        first_new = state.profiles
        for p in range(state.profiles):
            parent[p] = p
            gains[p] = {}
        held = np.asarray(state.ident, dtype=np.int64).tolist()
        for i, p, t in zip(held, np.asarray(state.owner).tolist(), np.asarray(state.gain_ts).tolist()):
            owner[i] = p
            gains[p].setdefault(type_of[i], []).append(t)
        for per_type in gains.values():
            for lst in per_type.values():
                lst.sort()
        unchecked.update(range(state.profiles))
    loaded = set(owner)

    def find(x: int) -> int:
        root = x
        while (up := parent[root]) != root:
            root = up
        while x != root:
            parent[x], x = root, parent[x]
        return root

    def breaks(profs: set[int], new: list[int], t: int) -> int | None:
        """The highest-priority type whose limit the merge would break, ``None`` if none."""
        counts: dict[int, int] = {}
        for i in new:
            ty = type_of[i]
            counts[ty] = counts.get(ty, 0) + 1
        check = set(counts)
        if len(profs) > 1 or profs & unchecked:
            for q in profs:
                check.update(gains[q])
        for ty in sorted(check):
            n = counts.get(ty, 0)
            period = periods[ty]
            for q in profs:
                lst = gains[q].get(ty)
                if lst:
                    n += len(lst) if period < 0 else len(lst) - bisect.bisect_right(lst, t - period)
            if n > limits[ty]:
                return ty
        return None

    for k, e in enumerate(evs.tolist()):
        ids = ids_flat[bounds[k] : bounds[k + 1]]
        t = ts_list[k]
        p0 = owner.get(ids[0])
        if p0 is not None:
            r0 = find(p0)
            if r0 not in unchecked and all(i in owner and find(owner[i]) == r0 for i in ids[1:]):
                ev_prof.append(r0)
                continue
        ids = list(ids)
        resolved = NO
        while ids:
            profs = {find(owner[i]) for i in ids if i in owner}
            new = [i for i in ids if i not in owner]
            # the spec creates a profile without a limit check ("if P is empty: create")
            broken = breaks(profs, new, t) if profs else None
            if broken is not None:
                dropped = ids.pop()
                out.violation_event.append(e)
                out.violation_type.append(broken)
                out.violation_ident.append(dropped)
                continue
            if profs:
                into = min(profs)
                target = gains[into]
                for q in sorted(profs):
                    if q == into:
                        continue
                    parent[q] = into
                    for ty, lst in gains.pop(q).items():
                        have = target.setdefault(ty, [])
                        have.extend(lst)
                        have.sort()
                    out.merge_from.append(q)
                    out.merge_into.append(into)
                    out.merge_event.append(e)
            else:
                into = e + first_new
                parent[into] = into
                target = gains[into] = {}
                if breaks(set(), new, t) is not None:
                    unchecked.add(into)
            unchecked.difference_update(profs)  # a checked merge / gain: within limits now
            for i in new:
                owner[i] = into
                target.setdefault(type_of[i], []).append(t)
                gain_event[i] = e
            resolved = into
            break
        ev_prof.append(resolved)

    out.events = evs.tolist()
    out.joined = ev_prof
    out.profiles = [NO if p == NO else find(p) for p in ev_prof]
    out.idents = [i for i in owner if i not in loaded]
    out.ident_profiles = [find(owner[i]) for i in out.idents]
    out.ident_gains = [gain_event[i] for i in out.idents]
    out.state_final = [find(p) for p in range(first_new)]
    return out
