"""duplicates.gexf, read back with networkx (the reader Gephi users script with)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from medianalysed import gexf
from medianalysed.dupactions import DuplicateGroups, duplicate_fields
from medianalysed.outbox import write_lines_atomic


def _match(tier: str, path: str, seen_in: str | None = None, **distances: int | None):
    return {"tier": tier, "path": path, "seen_in": seen_in, "distances": distances}


def _add(collector: DuplicateGroups, path: str, matches: list[dict[str, Any]], **fields: Any):
    chosen = duplicate_fields(matches, fields.pop("keeper", None))
    collector.add({"path": path, "duplicates": matches, **chosen, **fields})


def test_the_graph_reads_back_with_nodes_edges_tiers_and_distances(tmp_path: Path):
    collector = DuplicateGroups()
    near = {"phash": 4, "dhash": 6, "ahash": 2, "whash": 3, "colorhash": None}
    _add(
        collector,
        "a.jpg",
        [_match("exact", "c.jpg", phash=0), _match("near", 'b "odd"\x01<&>.jpg', **near)],
        duplicate_group="a.jpg",
    )
    _add(
        collector,
        'b "odd"\x01<&>.jpg',
        [_match("near", "a.jpg", **near)],
        duplicate_group="a.jpg",
        keeper="a.jpg",
    )
    _add(
        collector,
        "c.jpg",
        [_match("exact", "a.jpg", phash=0), _match("same_pixels", "x.png", "holiday", phash=0)],
        duplicate_group="a.jpg",
        keeper="a.jpg",
    )
    path = tmp_path / gexf.GEXF_FILE
    write_lines_atomic(path, gexf.lines(collector, "trip\x02"))

    graph = nx.read_gexf(path)
    labels = {data["label"]: node for node, data in graph.nodes(data=True)}
    assert sorted(labels) == ["a.jpg", 'b "odd"\\x01<&>.jpg', "c.jpg", "x.png"]
    a, b, c, x = (labels[name] for name in sorted(labels))
    assert graph.nodes[a]["keeper"] is True
    assert graph.nodes[c]["keeper"] is False
    assert graph.nodes[x]["batch"] == "holiday"
    assert graph.nodes[a]["batch"] == "trip\\x02"
    assert {graph.nodes[n]["group"] for n in graph} == {"a.jpg"}
    assert graph.nodes[c]["tier"] == "exact"
    assert graph.number_of_edges() == 3
    assert graph.edges[a, b]["tier"] == "near"
    assert graph.edges[a, b]["phash"] == 4
    assert graph.edges[a, b]["dhash"] == 6
    assert "colorhash" not in graph.edges[a, b]  # unknown distances are left out
    assert graph.edges[a, c]["weight"] == 3
    assert graph.edges[c, x]["tier"] == "same_pixels"


def test_a_batch_without_duplicates_is_an_empty_graph(tmp_path: Path):
    path = tmp_path / gexf.GEXF_FILE
    write_lines_atomic(path, gexf.lines(DuplicateGroups(), "empty"))
    graph = nx.read_gexf(path)
    assert graph.number_of_nodes() == 0
    assert graph.number_of_edges() == 0
