"""`duplicates.gexf`: the duplicate graph of one batch, for Gephi and other graph tools (SPEC §4).

GEXF 1.3 written with the standard library (networkx would cost its import, about 0.2 s, in
the daemon for a format this small; a test reads our output with networkx). Nodes are this
batch's files that have a match and the earlier batches' images they match (`seen_in`); edges
are the listed matches, each pair once, with the tier and every hash distance as attributes and
a weight by tier (exact 3, same_pixels 2, near 1), so a layout pulls copies closest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from medianalysed.dupactions import DuplicateGroups, Edge, Node
from medianalysed.dupindex import HASH_NAMES

GEXF_FILE = "duplicates.gexf"
_WEIGHT = {"exact": 3, "same_pixels": 2, "near": 1}
_NODE_ATTRIBUTES = (("batch", "string"), ("group", "string"), ("tier", "string"))
_NODE_KEEPER = ("keeper", "boolean")
# XML 1.0 cannot hold these characters, not even as references: written as escapes instead.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: str) -> str:
    """`value` with the characters XML 1.0 forbids written as `\\xNN` / `\\uXXXX` escapes."""
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), value)


def _attr(value: object) -> str:
    return quoteattr(xml_text(str(value)))


def _declarations() -> Iterator[str]:
    yield '  <attributes class="node">\n'
    for index, (title, kind) in enumerate((*_NODE_ATTRIBUTES, _NODE_KEEPER)):
        yield f'   <attribute id="{index}" title="{title}" type="{kind}"/>\n'
    yield "  </attributes>\n"
    yield '  <attributes class="edge">\n'
    yield '   <attribute id="0" title="tier" type="string"/>\n'
    for index, name in enumerate(HASH_NAMES, start=1):
        yield f'   <attribute id="{index}" title="{name}" type="integer"/>\n'
    yield "  </attributes>\n"


def _node_facts(groups: Sequence[Mapping[str, Any]]) -> dict[Node, tuple[str, str, bool]]:
    """Per node: its group id, its tier, whether it is the group's keeper (first group wins)."""
    facts: dict[Node, tuple[str, str, bool]] = {}
    for group in groups:
        for member in group["members"]:
            node: Node = (member["seen_in"], member["path"])
            keeper = member["seen_in"] is None and member["path"] == group["keeper"]
            facts.setdefault(node, (group["id"], member["tier"], keeper))
    return facts


def _values(values: Sequence[tuple[int, object]]) -> str:
    cells = "".join(f'<attvalue for="{key}" value={_attr(value)}/>' for key, value in values)
    return f"<attvalues>{cells}</attvalues>"


def _node_line(node_id: str, node: Node, batch_id: str, facts: tuple[str, str, bool]) -> str:
    seen_in, path = node
    group, tier, keeper = facts
    values: list[tuple[int, object]] = [
        (0, seen_in or batch_id),
        (1, group),
        (2, tier),
        (3, "true" if keeper else "false"),
    ]
    return f'   <node id="{node_id}" label={_attr(path)}>{_values(values)}</node>\n'


def _edge_line(edge_id: str, source: str, target: str, edge: Edge) -> str:
    values: list[tuple[int, object]] = [(0, edge.tier)]
    values += [
        (index, edge.distances[name])
        for index, name in enumerate(HASH_NAMES, start=1)
        if isinstance(edge.distances.get(name), int)
    ]
    weight = _WEIGHT.get(edge.tier, 1)
    return (
        f'   <edge id="{edge_id}" source="{source}" target="{target}" weight="{weight}">'
        f"{_values(values)}</edge>\n"
    )


def lines(collector: DuplicateGroups, batch_id: str) -> Iterator[str]:
    """The document, line by line."""
    facts = _node_facts(collector.groups_json())
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield '<gexf xmlns="http://gexf.net/1.3" version="1.3">\n'
    description = escape(xml_text(f"duplicates of batch {batch_id}"))
    yield f" <meta><creator>medianalysed</creator><description>{description}</description></meta>\n"
    yield ' <graph defaultedgetype="undirected" mode="static">\n'
    yield from _declarations()
    ids = {node: f"n{number}" for number, node in enumerate(collector.nodes())}
    yield "  <nodes>\n"
    for node, node_id in ids.items():
        yield _node_line(node_id, node, batch_id, facts.get(node, ("", "", False)))
    yield "  </nodes>\n"
    yield "  <edges>\n"
    for number, edge in enumerate(collector.edges()):
        yield _edge_line(f"e{number}", ids[edge.source], ids[edge.target], edge)
    yield "  </edges>\n"
    yield " </graph>\n"
    yield "</gexf>\n"
