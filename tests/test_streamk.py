"""The stream-K schedule the Hopper kernel relies on (streamk.j2), modelled in
Python: rotated walks, one owner per cut tile that reaches it last, at most
one partial slot per CTA, owners waiting only on lower-numbered CTAs."""
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
