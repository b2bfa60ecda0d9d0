"""``benchmarks/graph_dump.py``'s reading of a CUDA graph's DOT print (the format of cudaGraphDebugDotPrint): nodes
by type, edges, and nodes that wait on more than one other."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import graph_dump  # noqa: E402

DOT = """digraph dot {
subgraph cluster_1 {
label="graph_1" graph[style="dashed"];
"graph_1_node_0"[style="solid" shape="record" label="{KERNEL\\l| {ID | 0 | triton_poi_fused_0}\\l}"];
"graph_1_node_1"[style="solid" shape="record" label="{MEMCPY\\l| {ID | 1}\\l}"];
"graph_1_node_2"[style="solid" shape="record" label="{KERNEL\\l| {ID | 2 | _qgemv_words_kernel}\\l}"];
"graph_1_node_3"[style="solid" shape="record" label="{KERNEL\\l| {ID | 3 | _attn_decode_kernel}\\l}"];
"graph_1_node_0" -> "graph_1_node_2";
"graph_1_node_1" -> "graph_1_node_2";
"graph_1_node_2" -> "graph_1_node_3";
}
}
"""


def test_summarize_dot():
    assert graph_dump.summarize_dot(DOT) == {"nodes": {"KERNEL": 3, "MEMCPY": 1}, "edges": 3,
                                             "multi_dependency_nodes": 1}
