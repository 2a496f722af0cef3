"""A conversion's life as a state (converter.conversion.State): only the moves TRANSITIONS allows."""

import pytest

from mptcp_cpe.converter.conversion import ENDED, TRANSITIONS, Conversion, State


def _at(state: State) -> Conversion:
    conv = object.__new__(Conversion)  # no sockets: only the state moves
    conv.src, conv.dst, conv.state = ("198.18.1.2", 40000), ("192.0.2.1", 80), state
    return conv


def test_every_state_has_its_moves_and_the_ends_have_none():
    assert set(TRANSITIONS) == set(State)
    assert all(not TRANSITIONS[s] for s in ENDED)


@pytest.mark.parametrize("start, to", [(a, b) for a in State for b in TRANSITIONS[a]])
def test_an_allowed_move_is_made(start, to):
    conv = _at(start)
    conv._to(to)
    assert conv.state is to and conv.ended == (to in ENDED)


@pytest.mark.parametrize("start, to", [(a, b) for a in State for b in State if b not in TRANSITIONS[a]])
def test_a_move_not_allowed_is_refused(start, to):
    conv = _at(start)
    with pytest.raises(RuntimeError, match=f"{start.name} cannot become {to.name}"):
        conv._to(to)
    assert conv.state is start
