"""What a keeper of embedded servers reads from the process it keeps (embedded_keeper.py):
the killed-outright case itself is tests/e2e/test_foundry_up.py's."""

from __future__ import annotations

from infrastructure.embedded_keeper import KeeperOrders, read_orders


def test_a_released_keeper_does_nothing_whatever_else_it_was_told() -> None:
    assert read_orders(["wait 41", "release"]) == KeeperOrders(released=True, outlive=(41,))


def test_a_keeper_never_released_outlives_the_processes_it_was_told_of() -> None:
    orders = read_orders(["wait 41", "wait 42\r", "wait x", "chatter", ""])
    assert orders == KeeperOrders(released=False, outlive=(41, 42))


def test_a_keeper_told_nothing_stops_the_servers_at_once() -> None:
    assert read_orders([]) == KeeperOrders(released=False, outlive=())
