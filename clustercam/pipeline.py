"""One image in, one explanation out: the steps the CLI and the app share.

``explain_image`` loads and checks the image, prepares it for the model, runs a method and keeps
everything a front end needs to draw or save (the original image, the network's view of it, the
result); ``summary`` turns that into plain JSON-ready data.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .imaging import ImageSource, check_has_content, load_image
from .methods import ClusterCAM, ClusterCAMResult, get_method
from .methods.base import BaseCAM, CAMResult, Explanation
from .render import resize_heatmap
from .zoo import ModelSpec

#: The numbers of clusters whose quality :meth:`ImageExplanation.cluster_quality` reports.
QUALITY_QS = range(2, 9)


@dataclass
class ImageExplanation:
    """An explained image.

    Attributes:
        image: the user's image as RGB, EXIF orientation applied, at its own size.
        prepared: the RGB image the network saw (resized, aspect ratio bounded).
        inputs: the preprocessed ``1×3×H×W`` tensor.
        result: the method's batch result (one image).
        method: the method instance that explained it.
    """

    spec: ModelSpec
    layer: str
    image: Image.Image
    prepared: Image.Image
    inputs: torch.Tensor
    result: CAMResult
    method: BaseCAM | None = None

    @property
    def explanation(self) -> Explanation:
        return self.result[0]

    @property
    def is_cluster_cam(self) -> bool:
        return isinstance(self.result, ClusterCAMResult)

    def heatmap(self) -> np.ndarray:
        """The heatmap at the image's own size, float32 in ``[0, 1]``."""
        return resize_heatmap(self.result.heatmaps[0], self.image.size)

    @property
    def baseline_color(self) -> tuple[float, float, float]:
        """The colour of masked-out pixels (the preprocessing's mean), 0–255."""
        return tuple(255.0 * m for m in self.spec.mean)  # type: ignore[return-value]

    def summary(self) -> dict[str, Any]:
        return summary(self)

    def cluster_quality(self, qs: range | list[int] = QUALITY_QS) -> dict[int, dict[str, float]]:
        """Silhouette and Calinski–Harabasz scores of this image's maps clustered into each ``Q``
        (Cluster-CAM only; :meth:`~clustercam.methods.cluster.ClusterCAM.quality_by_q`)."""
        if not self.is_cluster_cam or not isinstance(self.method, ClusterCAM):
            raise ValueError("Cluster quality applies to Cluster-CAM explanations only.")
        return self.method.quality_by_q(self.result.activations[0], qs)


def explain_image(
    spec: ModelSpec,
    source: ImageSource,
    *,
    method: str = "clustercam",
    layer: str | None = None,
    target: int | str | None = None,
    **options: Any,
) -> ImageExplanation:
    """Explain one image with ``method`` at ``layer`` (default the model's) for ``target``.

    ``target`` is a class index or name (default: the predicted class); ``options`` go to the
    method's constructor (``q``, ``beta``, ``clustering``, ``n_eigenvectors``, ...).

    Raises:
        ImageError: unreadable, unsafe, empty or single-colour image.
        ValueError: bad layer, target or option (message fit for a person).
    """
    image = check_has_content(load_image(source))
    prepared = spec.resize(image)
    inputs = spec.to_tensor(prepared)
    layer = layer or spec.default_layer
    target_index = None if target is None or target == "" else spec.class_index(target)
    cam = get_method(method)(spec, layer, **options)
    result = cam(inputs, target_index)
    return ImageExplanation(spec, layer, image, prepared, inputs, result, cam)


def class_entry(spec: ModelSpec, index: int, probability: float) -> dict[str, Any]:
    return {"index": int(index), "name": spec.categories[index], "probability": round(float(probability), 6)}


def summary(explained: ImageExplanation) -> dict[str, Any]:
    """JSON-ready facts of an explanation (top-5, target, scores, base/scissors, costs)."""
    spec, result, one = explained.spec, explained.result, explained.explanation
    data: dict[str, Any] = {
        "model": spec.name,
        "layer": explained.layer,
        "method": result.method,
        "predicted_top5": [
            class_entry(spec, index, p) for index, p in zip(one.top_classes, one.top_probabilities, strict=True)
        ],
        "target": class_entry(spec, one.target, one.target_probability),
        "forward_passes": one.forward_passes,
        "backward_passes": one.backward_passes,
        "seconds": round(one.seconds, 4),
        "device": str(spec.device),
        "device_name": device_name(spec.device),
        "image_size": list(explained.image.size),
        "input_size": list(explained.prepared.size),
    }
    if isinstance(result, ClusterCAMResult):
        data.update(
            preset=getattr(explained.method, "preset", None),
            clustering=getattr(explained.method, "clustering", None),
            clustering_options=dict(getattr(explained.method, "clustering_options", {})),
            q=len(one.cluster_sizes),
            **result.cognition.as_dict(),
            scores=[round(s, 6) for s in one.scores.tolist()],
            cluster_sizes=one.cluster_sizes,
            base_index=one.base_index,
            scissors_index=one.scissors_index,
        )
    return data


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or device.type
