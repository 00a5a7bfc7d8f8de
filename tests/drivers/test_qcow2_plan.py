"""The snapshot tree planner on its own: plain trees in, steps out (no database, no qemu-img).

Each case is one rule of the qemu-img notes' "Snapshot trees" section (docs/snapshots.md).
"""

from __future__ import annotations

import pytest

from volumes.drivers.qcow2.plan import (
    HEAD,
    MERGE_COMMIT,
    MERGE_REBASE,
    Node,
    NotMergeable,
    Tree,
    layer_in_plan,
    merge_strategy,
    must_hide,
    node_uuid_in_plan,
    plan_delete,
    plan_rollback,
)


def tree(spec: dict[str, str | None], *, head_on: str | None, hidden=(), clones=()) -> Tree:
    """A tree from {name: parent name}; ids follow the order given, uuids and layers derive from names."""
    ids = {name: index for index, name in enumerate(spec, start=1)}
    nodes = {
        ids[name]: Node(
            id=ids[name],
            uuid=f"uuid-{name}",
            name=name,
            parent=ids[parent] if parent else None,
            hidden=name in hidden,
            layer=f"{name}.qcow2",
            clones=1 if name in clones else 0,
        )
        for name, parent in spec.items()
    }
    return Tree(nodes=nodes, head_on=ids[head_on] if head_on else None)


def steps_of(plan) -> list[tuple[str, str | None]]:
    """(layer name, where it goes): a name, "head", or None for a removal."""
    names = {n.id: n.name for n in plan.before.nodes.values()}
    return [(s.node.name, s.into if s.into in (HEAD, None) else names[s.into]) for s in plan.steps]


def shape(t: Tree) -> dict[str, str | None]:
    names = {n.id: n.name for n in t.nodes.values()}
    return {n.name: names.get(n.parent) for n in t.nodes.values()}


# -- delete: what happens to the snapshot's own layer ------------------------------------------------


def test_a_layer_nothing_reads_is_removed():
    # The head was rolled back to s1: s2 is a leaf that nothing reads.
    t = tree({"s1": None, "s2": "s1"}, head_on="s1")
    plan = plan_delete(t, "uuid-s2")
    assert steps_of(plan) == [("s2", None)]
    assert shape(plan.after) == {"s1": None}
    assert plan.after.head_on == 1


def test_a_layer_with_one_child_layer_is_merged_into_it():
    t = tree({"s1": None, "s2": "s1", "s3": "s2"}, head_on="s3")
    plan = plan_delete(t, "uuid-s2")
    assert steps_of(plan) == [("s2", "s3")]
    assert shape(plan.after) == {"s1": None, "s3": "s1"}
    assert plan.after.touched == {3}


def test_a_layer_under_the_head_only_is_merged_into_the_head():
    t = tree({"s1": None, "s2": "s1"}, head_on="s2")
    plan = plan_delete(t, "uuid-s2")
    assert steps_of(plan) == [("s2", HEAD)]
    assert plan.after.head_on == 1
    assert plan.after.touched == {HEAD}


def test_the_root_layer_merged_into_the_head_leaves_the_head_on_nothing():
    t = tree({"s1": None}, head_on="s1")
    plan = plan_delete(t, "uuid-s1")
    assert steps_of(plan) == [("s1", HEAD)]
    assert plan.after.head_on is None
    assert plan.after.nodes == {}


def test_the_given_tree_is_left_as_it_was():
    t = tree({"s1": None, "s2": "s1"}, head_on="s2")
    plan_delete(t, "uuid-s2")
    assert shape(t) == {"s1": None, "s2": "s1"}
    assert t.head_on == 2 and t.touched == set()


def test_two_readers_or_more_hide_the_layer_instead():
    # A rollback to s1 made a branch: s1 is read by s2 and by the head.
    t = tree({"s1": None, "s2": "s1"}, head_on="s1")
    assert must_hide(t, 1)
    assert not must_hide(t, 2)
    with pytest.raises(NotMergeable):
        plan_delete(t, "uuid-s1")


def test_two_child_layers_hide_the_layer():
    t = tree({"s1": None, "a": "s1", "b": "s1"}, head_on="b")
    assert must_hide(t, 1)


def test_a_layer_read_by_linked_clones_is_never_merged():
    t = tree({"s1": None, "s2": "s1"}, head_on="s2", clones=["s1"])
    assert not must_hide(t, 1)  # one layer reads it, but a clone does too
    with pytest.raises(NotMergeable):
        plan_delete(t, "uuid-s1")


def test_a_snapshot_already_gone_plans_nothing():
    # A redelivered task after its step was applied: the same (empty) plan.
    t = tree({"s1": None}, head_on="s1")
    plan = plan_delete(t, "uuid-gone")
    assert plan.steps == []
    assert shape(plan.after) == {"s1": None}


# -- hidden layers: collected once down to one reader or none ------------------------------------------


def test_a_hidden_layer_is_collected_when_one_reader_is_left():
    # s1 hidden (read by s2 and the head); deleting s2 leaves the head as its only reader.
    t = tree({"s1": None, "s2": "s1"}, head_on="s1", hidden=["s1"])
    plan = plan_delete(t, "uuid-s2")
    assert steps_of(plan) == [("s2", None), ("s1", HEAD)]
    assert plan.after.nodes == {} and plan.after.head_on is None


def test_a_hidden_layer_still_read_twice_stays():
    t = tree({"s1": None, "a": "s1", "b": "s1", "c": "b"}, head_on="s1", hidden=["s1"])
    plan = plan_delete(t, "uuid-c")
    assert steps_of(plan) == [("c", None)]
    assert "s1" in shape(plan.after)


def test_hidden_layers_collapse_in_cascade():
    # h1 hidden (read by h2 and the head), h2 hidden (read by x and, once, by another branch since gone).
    t = tree({"h1": None, "h2": "h1", "x": "h2"}, head_on="h1", hidden=["h1", "h2"])
    plan = plan_delete(t, "uuid-x")
    # x removed; h2 now read by nothing: removed; h1 read by the head only: merged into it.
    assert steps_of(plan) == [("x", None), ("h2", None), ("h1", HEAD)]
    assert plan.after.nodes == {}


def test_a_hidden_layer_with_linked_clones_is_never_collected():
    t = tree({"s1": None, "s2": "s1"}, head_on="s1", hidden=["s1"], clones=["s1"])
    plan = plan_delete(t, "uuid-s2")
    assert steps_of(plan) == [("s2", None)]
    assert "s1" in shape(plan.after)


# -- rollback ------------------------------------------------------------------------------------------


def test_a_rollback_makes_a_branch_and_collects_nothing():
    t = tree({"s1": None, "s2": "s1"}, head_on="s2")
    plan = plan_rollback(t, 1)
    assert plan.steps == []
    assert plan.after.head_on == 1
    # s1 is now read by s2 and by the head: deleting it would hide it.
    assert must_hide(plan.after, 1)


def test_a_rollback_collects_the_hidden_layer_the_head_left():
    # s2 was hidden while read by s3 and the head; s3 is gone, the head rolls back to s1: s2 reads nothing.
    t = tree({"s1": None, "s2": "s1"}, head_on="s2", hidden=["s2"])
    plan = plan_rollback(t, 1)
    assert steps_of(plan) == [("s2", None)]
    assert shape(plan.after) == {"s1": None}
    assert plan.after.head_on == 1


def test_a_rollback_to_a_snapshot_taken_first_keeps_it():
    # snapshot_first: the head is frozen into "first" (a child of s2), then reset onto s1.
    t = tree({"s1": None, "s2": "s1", "first": "s2"}, head_on="first")
    plan = plan_rollback(t, 1)
    assert plan.steps == []
    assert shape(plan.after) == {"s1": None, "s2": "s1", "first": "s2"}


def test_a_hidden_layer_left_with_one_child_after_rollback_is_merged_into_it():
    # h hidden with children a and the head; the head rolls back to a's sibling root: h keeps a only.
    t = tree({"r": None, "h": "r", "a": "h"}, head_on="h", hidden=["h"])
    plan = plan_rollback(t, 1)
    assert steps_of(plan) == [("h", "a")]
    assert shape(plan.after) == {"r": None, "a": "r"}
    assert plan.after.touched == {3}


# -- where a step's files are, after earlier steps took nodes out --------------------------------------


def test_layers_and_uuids_are_found_also_for_nodes_a_step_removed():
    t = tree({"s1": None, "s2": "s1"}, head_on="s2")
    plan = plan_delete(t, "uuid-s2")
    assert layer_in_plan(2, plan.after, plan.steps) == "s2.qcow2"
    assert node_uuid_in_plan(2, plan.after, plan.steps) == "uuid-s2"
    assert layer_in_plan(1, plan.after, plan.steps) == "s1.qcow2"
    with pytest.raises(KeyError):
        layer_in_plan(99, plan.after, plan.steps)


# -- how a layer is folded -----------------------------------------------------------------------------


def test_the_cheaper_fold_is_chosen():
    assert (
        merge_strategy(named_by_backup=False, layer_bytes=lambda: 100, dependent_bytes=lambda: 10)
        == MERGE_COMMIT
    )
    assert (
        merge_strategy(named_by_backup=False, layer_bytes=lambda: 10, dependent_bytes=lambda: 100)
        == MERGE_REBASE
    )
    assert (
        merge_strategy(named_by_backup=False, layer_bytes=lambda: 10, dependent_bytes=lambda: 10)
        == MERGE_REBASE
    )


def test_a_layer_named_by_a_backup_is_only_rebased_and_not_measured():
    def never() -> int:
        raise AssertionError("measured")

    assert merge_strategy(named_by_backup=True, layer_bytes=never, dependent_bytes=never) == MERGE_REBASE
