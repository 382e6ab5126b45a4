"""The explain stage: the paper's attribution trees for the first evaluation examples, as JSON and SVG."""

from __future__ import annotations

from pathlib import Path

from attr_compress.compressor.data.rows import LabelledData
from attr_compress.compressor.explain.drawing import write_tree_svg
from attr_compress.compressor.explain.trees import AttributionTree, build_tree
from attr_compress.compressor.models.loading import LoadedModel
from attr_compress.compressor.progress import progress_bar
from attr_compress.compressor.scoring.heads import predicted_attribution


def explain(
    loaded: LoadedModel,
    data: LabelledData,
    count: int,
    folder: str | Path,
    *,
    steps: int = 20,
    rule: str = "left",
    progress: bool = False,
) -> list[AttributionTree]:
    """Trees for the first ``count`` examples (F = predicted-class probability), written to ``folder`` as
    tree_NNN.json and tree_NNN.svg; returned in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    id2label = loaded.config.id2label
    trees = []
    for index, example in enumerate(progress_bar(data.examples[:count], desc="trees", unit="ex", enabled=progress)):
        result = predicted_attribution(loaded, example, steps=steps, rule=rule)
        predicted, gold = id2label.get(result["predicted"]), id2label.get(example.label)
        meta = {
            "row": example.row,
            "text": example.text,
            "text_pair": example.text_pair,
            "gold": gold or str(example.label),
            "predicted": predicted or str(result["predicted"]),
            "probability": result["probability"],
            "steps": steps,
            "title": f"row {example.row}: predicted {predicted} (p={result['probability']:.3f}), gold {gold}",
        }
        tree = build_tree(result["attributions"], result["tokens"], meta=meta)
        name = f"tree_{index + 1:03d}"
        tree.save(folder / f"{name}.json")
        write_tree_svg(tree, folder / f"{name}.svg")
        trees.append(tree)
    return trees
