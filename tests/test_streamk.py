"""The stream-K schedule the Hopper kernel relies on (streamk.j2), modelled in
Python: rotated walks, one owner per cut tile that reaches it last, at most
one partial slot per CTA, owners waiting only on lower-numbered CTAs; and the
producer's walk (gemm_wgmma_sm90.cu.j2), which must fill the ring with the
units the consumers take from it, in the same order."""
import itertools

import pytest


def sk_start(p, P, U):
    return U * p // P


def sk_owner(u, P, U):
    return ((u + 1) * P - 1) // U


def rotation(ub, ue, Q):
    return min(ue, (ub + Q - 1) // Q * Q)


def segments(p, P, U, Q):
    """CTA p's segments in the order the kernel walks them."""
    ub, ue = sk_start(p, P, U), sk_start(p + 1, P, U)
    ur = rotation(ub, ue, Q)
    out, lo, lim = [], (ur if ur < ue else ub), (ue if ur < ue else ur)
    done = 0
    while done < ue - ub:
        hi = min(lim, (lo // Q + 1) * Q)
        out.append((lo, hi))
        done += hi - lo
        lo = hi
        if lo == ue and ur > ub:
            lo, lim = ub, ur
    return out


def producer_units(p, P, U, Q, stages):
    """CTA p's producer thread as the template writes it: seek() and advance()
    keep (tile, kq) by bumps, re-seeking u_begin when the rotated walk wraps;
    the first min(n, STAGES) units' weights are issued, then the walk restarts
    for the same units' activations (after the grid wait), then each further
    unit's activations and weights together. Returns the unit of each ring
    step `it` (its stage is it % STAGES), checking that the weights and the
    activations of every step are of the same unit."""
    ub, ue = sk_start(p, P, U), sk_start(p + 1, P, U)
    ur = rotation(ub, ue, Q)
    n_units, n1 = ue - ub, ue - ur
    state = {}

    def seek(u):
        state["tile"], state["kq"] = u // Q, u % Q

    def advance(it):
        state["kq"] += 1
        if state["kq"] == Q:
            state["kq"], state["tile"] = 0, state["tile"] + 1
        if it + 1 == n1:
            seek(ub)

    unit = lambda: state["tile"] * Q + state["kq"]   # noqa: E731
    pre = min(n_units, stages)
    weights = []
    seek(ur if n1 else ub)
    for it in range(pre):
        weights.append(unit())
        advance(it)
    seek(ur if n1 else ub)
    steps = []
    for it in range(pre):
        steps.append(unit())                        # activations, after the wait
        advance(it)
    assert steps == weights, "the early weights are the first stages' units"
    for it in range(pre, n_units):
        steps.append(unit())                        # activations and weights of one stage
        advance(it)
    return steps


def contributions(P, U, Q):
    """Per cut tile, from the consumers' segments: {tile: {CTA: [segment
    kinds]}} where a CTA that is not the tile's last (sk_owner of its last
    unit) stores its partial sums ("store") and the last one reduces
    ("reduce"), as streamk.reduce decides."""
    cut = {}
    for p in range(P):
        for lo, hi in segments(p, P, U, Q):
            if hi - lo == Q:
                continue
            tile = lo // Q
            last = sk_owner(tile * Q + Q - 1, P, U)
            cut.setdefault(tile, {}).setdefault(p, []).append("reduce" if p == last else "store")
    return cut


# (T, Q, P): T tiles of Q k-blocks, P CTAs (capped at U; 0 and -1: U and U - 1)
WALKS = sorted(set(itertools.product([1, 2, 3, 7, 32], [1, 2, 5, 64], [1, 2, 5, 131, 132, -1, 0]))
               | {(32, 32, 264), (1024, 32, 132), (7, 3, 21), (5, 64, 3), (3, 7, 20),
                  (448, 64, 132), (2, 5, 9), (100, 7, 699), (9, 128, 1151)})


@pytest.mark.parametrize("T,Q,P", WALKS)
def test_producer_fills_the_ring_in_the_consumers_order(T, Q, P):
    """For any grid (U or U - 1 CTAs: one or two units each; P not dividing U;
    P = 1): every unit is loaded exactly once over all CTAs, each CTA's
    producer loads its units in exactly the order its consumers walk their
    segments (whatever the ring depth), and every tile cut between CTAs is
    reduced by its owner `last` = sk_owner(its last unit), after exactly the
    CTAs first..last-1 stored one partial each."""
    U = T * Q
    P = max(1, U + P) if P <= 0 else min(P, U)
    loaded = []
    for p in range(P):
        consumers = [u for lo, hi in segments(p, P, U, Q) for u in range(lo, hi)]
        for stages in (1, 4, 8):
            assert producer_units(p, P, U, Q, stages) == consumers, (p, stages)
        loaded += consumers
    assert sorted(loaded) == list(range(U)), "every unit loaded exactly once"
    cut = contributions(P, U, Q)
    for tile in range(T):
        first, last = sk_owner(tile * Q, P, U), sk_owner(tile * Q + Q - 1, P, U)
        if first == last:
            assert tile not in cut, "a tile one CTA holds is never cut"
            continue
        # one store each (the owner's counter reaches last - first), one reduction
        assert cut[tile] == {**{q: ["store"] for q in range(first, last)}, last: ["reduce"]}
        lo, hi = segments(last, P, U, Q)[-1]
        assert lo // Q == tile and hi == tile * Q + Q, "the owner's last piece ends the tile"


@pytest.mark.parametrize("T,Q,P", list(itertools.product([1, 2, 3, 7, 32], [1, 2, 5, 64],
                                                         [1, 2, 5, 131, 132, 264])))
def test_schedule_invariants(T, Q, P):
    U = T * Q
    P = min(P, U)
    covered = []
    for p in range(P):
        segs = segments(p, P, U, Q)
        covered += [u for lo, hi in segs for u in range(lo, hi)]
        partial_slots = 0
        for i, (lo, hi) in enumerate(segs):
            tile = lo // Q
            assert hi <= (tile + 1) * Q          # a segment never crosses a tile
            if hi - lo == Q:
                continue
            first, last = sk_owner(tile * Q, P, U), sk_owner(tile * Q + Q - 1, P, U)
            assert first <= p <= last and first < last
            if p == last:
                assert i == len(segs) - 1        # the owner reaches its cut tile last
            else:
                partial_slots += 1
        assert partial_slots <= 1                # one slot per CTA suffices
    assert sorted(covered) == list(range(U))     # every unit once
