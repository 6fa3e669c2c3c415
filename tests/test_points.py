"""Hook point selection: globs, classes, predicates, lists, errors naming close names."""

from __future__ import annotations

import pytest
from torch import nn

from hookstats import PointSelectionError, select_points

from models import SmallCNN, TinyTransformer


def names(model, points=None):
    return [p.name for p in select_points(model, points)]


def test_default_selects_every_module_with_root_and_depth():
    points = select_points(SmallCNN())
    assert [p.name for p in points] == ["(model)", "conv1", "conv2", "classifier"]
    assert [(p.depth, p.is_leaf) for p in points] == [(0, False), (1, True), (1, True), (1, True)]


def test_glob_class_list_and_predicate():
    model = TinyTransformer(layers=2)
    assert names(model, "blocks.*.attn") == ["blocks.0.attn", "blocks.1.attn"]
    assert names(model, "blocks.?.mlp.?") == [
        "blocks.0.mlp.0",
        "blocks.0.mlp.1",
        "blocks.0.mlp.2",
        "blocks.1.mlp.0",
        "blocks.1.mlp.1",
        "blocks.1.mlp.2",
    ]
    assert names(model, nn.LayerNorm) == ["blocks.0.norm", "blocks.1.norm"]
    assert names(model, ["embed", nn.LayerNorm]) == ["embed", "blocks.0.norm", "blocks.1.norm"]
    assert names(model, lambda name, m: name.endswith("qkv")) == [
        "blocks.0.attn.qkv",
        "blocks.1.attn.qkv",
    ]
    assert names(model, "(model)") == ["(model)"]


def test_shared_module_is_one_point():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert names(model, nn.Linear) == ["0"]


def test_unknown_pattern_lists_close_names():
    with pytest.raises(PointSelectionError, match=r"'conv3' selects no module.*conv1"):
        select_points(SmallCNN(), "conv3")
    with pytest.raises(PointSelectionError, match="no LSTM"):
        select_points(SmallCNN(), ["conv1", nn.LSTM])


def test_malformed_selection_and_non_module():
    with pytest.raises(PointSelectionError, match="glob strings, nn.Module subclasses or modules"):
        select_points(SmallCNN(), [3])
    with pytest.raises(PointSelectionError, match="empty list"):
        select_points(SmallCNN(), [])
    with pytest.raises(PointSelectionError, match="expected an nn.Module"):
        select_points("model")  # type: ignore[arg-type]
    with pytest.raises(PointSelectionError, match="selects no module of this model"):
        select_points(SmallCNN(), lambda name, m: False)


def test_module_instances_select_themselves_and_foreign_ones_are_refused():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert [p.name for p in select_points(model, model[2])] == ["2"]
    assert [p.name for p in select_points(model, [model[1], "0"])] == ["0", "1"]
    with pytest.raises(PointSelectionError, match="not part of this model"):
        select_points(model, nn.Linear(4, 8))


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (lambda name: True, r"called as f\(name, module\)"),
        (lambda name, module: 1 / 0, "predicate raised ZeroDivisionError on module"),
        (b"0", "got bytes"),
        ({"0": 1}, "got dict"),
    ],
)
def test_bad_selections_are_clear_errors(points, message):
    model = nn.Sequential(nn.Linear(4, 8))
    with pytest.raises(PointSelectionError, match=message):
        select_points(model, points)
