"""Presets and the combinations of scored cluster maps, against values written here by hand.

- every combination on a tiny 2×2 case where the clamp of ``gated``, the normalisation and the
  output scaling each change the answer (computed by hand in the comments);
- the presets against literal values, their spectral options reaching the clustering;
- what an explanation says it computed (formula, "in the paper"), β's effect and its trade-off.
"""

from __future__ import annotations

import pytest
import torch

import clustercam
from clustercam import metrics
from clustercam.clustering import spectral_clustering
from clustercam.methods.cognition import cognition_heatmaps
from clustercam.methods.presets import ALIASES, DEFAULT_PRESET, PRESETS, preset_name

from .test_clustercam import counted_images

# ---- the tiny case ---------------------------------------------------------------------------
# Three 2×2 cluster maps F_q (already at the input size, so no upsampling), scores y = (0.7, 0.1,
# 0.4): base = cluster 0 (eq. 20), scissors = cluster 1 (eq. 21); β = 0.75.
F = torch.tensor([[[[2.0, -1.0], [1.0, 1.0]],
                   [[0.0, 4.0], [-2.0, 2.0]],
                   [[1.0, 1.0], [1.0, 3.0]]]])
# "minmax": the masks H_q = (F − min)/(max − min), written out by hand:
MASKS = torch.tensor([[[[1.0, 0.0], [2 / 3, 2 / 3]],
                       [[1 / 3, 1.0], [0.0, 2 / 3]],
                       [[0.0, 0.0], [0.0, 1.0]]]])
SCORES = torch.tensor([[0.7, 0.1, 0.4]])
BETA = 0.75
# "max": N_q = F_q / max|F_q|: N0 = [[1, −.5], [.5, .5]], N1 = [[0, 1], [−.5, .5]], N2 = [[1/3, 1/3], [1/3, 1]].
EXPECTED = {
    # eq. 22 on N: .75·N0 − .25·N1 = [[.75, −.625], [.5, .25]] → relu, ÷ .75
    ("difference", "max", "relu"): [[1.0, 0.0], [2 / 3, 1 / 3]],
    # eq. 22 on H: .75·H0 − .25·H1 = [[2/3, −.25], [.5, 1/3]] → relu, ÷ 2/3
    ("difference", "minmax", "relu"): [[1.0, 0.0], [0.75, 0.5]],
    # eq. 22 on the raw means: .75·F0 − .25·F1 = [[1.5, −1.75], [1.25, .25]] → min–max over 3.25
    ("difference", "none", "minmax"): [[1.0, 0.0], [12 / 13, 8 / 13]],
    # gated: N0 ⊙ (1 − .25·clamp(N1, 0, 1)) = [[1, −.375], [.5, .4375]] → relu (unclamped, the
    # −.5 of N1 would give .5625 at the bottom left)
    ("gated", "max", "relu"): [[1.0, 0.0], [0.5, 0.4375]],
    # weighted: B_w = (7·N0 + N1 + 4·N2)/12 = [[25, −3.5], [13, 24]]/36; .75·B_w − .25·N1 =
    # [[18.75, <0], [14.25, 13.5]]/36 → relu, ÷ 18.75/36
    ("weighted", "max", "relu"): [[1.0, 0.0], [0.76, 0.72]],
    # multibase: y ≥ median (.4) → clusters 0 and 2: mean = [[2/3, −1/12], [5/12, .75]];
    # .75·mean − .25·N1 = [[.5, <0], [.4375, .4375]] → relu, ÷ .5
    ("multibase", "max", "relu"): [[1.0, 0.0], [0.875, 0.875]],
}


@pytest.mark.parametrize(("combination", "normalization", "output"), list(EXPECTED))
def test_each_combination_equals_its_hand_computed_values(combination, normalization, output):
    heatmap = cognition_heatmaps(MASKS, F, SCORES, BETA, normalization, output, combination)[0]
    assert torch.allclose(heatmap, torch.tensor(EXPECTED[combination, normalization, output]), atol=1e-6)


def test_beta_one_is_the_base_alone_and_equal_scores_fall_back_to_it():
    base = torch.tensor([[1.0, 0.0], [0.5, 0.5]])  # N0, relu, ÷ 1
    for combination in ("difference", "gated"):
        assert torch.allclose(cognition_heatmaps(MASKS, F, SCORES, 1.0, "max", "relu", combination)[0], base)
    tied = torch.tensor([[0.3, 0.3, 0.3]])  # base = scissors = cluster 0: the base alone whatever β
    assert torch.allclose(cognition_heatmaps(MASKS, F, tied, 0.2, "max", "relu", "difference")[0], base)


# ---- presets -----------------------------------------------------------------------------------
SPECTRAL = {"similarity": "correlation", "normalize_rows": True}
WRITTEN = {
    "eq22": {"q": 12, "beta": 0.8, "clustering": "kmeans", "normalization": "max", "output": "relu",
             "combination": "difference", **SPECTRAL},
    "spectral": {"q": 12, "beta": 0.8, "clustering": "spectral", "normalization": "max", "output": "relu",
                 "combination": "difference", **SPECTRAL},
    "discriminative": {"q": 8, "beta": 0.8, "clustering": "kmeans", "normalization": "minmax", "output": "relu",
                       "combination": "difference", **SPECTRAL},
    "gated": {"q": 8, "beta": 0.8, "clustering": "kmeans", "normalization": "max", "output": "relu",
              "combination": "gated", **SPECTRAL},
    "weighted": {"q": 6, "beta": 0.5, "clustering": "spectral", "normalization": "max", "output": "relu",
                 "combination": "weighted", "similarity": "correlation", "normalize_rows": True},
    "paper": {"q": 6, "beta": 0.5, "clustering": "kmeans", "normalization": "none", "output": "minmax",
              "combination": "difference", "similarity": "euclidean", "normalize_rows": False},
    "legacy": {"q": 3, "beta": 0.8, "clustering": "kmeans", "normalization": "max", "output": "relu",
               "combination": "difference", **SPECTRAL},
}


def test_presets_are_the_values_written_here():
    assert PRESETS == WRITTEN
    assert DEFAULT_PRESET == "eq22" and clustercam.DEFAULT_PRESET == "eq22"
    assert ALIASES == {"faithful": "gated"} and preset_name("faithful") == "gated" and preset_name(None) == "eq22"
    with pytest.raises(ValueError, match="Unknown preset 'best'; choose from eq22"):
        preset_name("best")
    with pytest.raises(ValueError, match="by text"):
        preset_name(["eq22"])


def test_the_presets_follow_the_tuning_runs_choice():
    """Rules D and S (docs/protocol.md, amendment 2) as the tuning run wrote them: the default is
    its eq.-22 choice, and every preset but ``paper`` clusters spectrally with its similarity."""
    import json

    from .conftest import ROOT

    choice = json.loads((ROOT / "docs" / "benchmarks" / "tuning-eq22" / "choice.json").read_text())
    assert choice["eq22_qualifies"] is True
    assert {key: PRESETS["eq22"][key] for key in choice["eq22"]} == choice["eq22"]
    wanted = (choice["spectral_options"]["similarity"], choice["spectral_options"]["normalize_rows"])
    for name, options in PRESETS.items():
        got = (options["similarity"], options["normalize_rows"])
        assert got == (("euclidean", False) if name == "paper" else wanted), name


def test_the_default_is_eq22_in_the_library(spec):
    cam = clustercam.ClusterCAM(spec)
    assert (cam.preset, cam.combination, cam.q, cam.beta) == ("eq22", "difference", 12, 0.8)
    assert cam.cognition.in_paper and cam.cognition.formula == "β·B − (1 − β)·S (eq. 22)"
    gated = clustercam.ClusterCAM(spec, preset="faithful")
    assert gated.preset == "gated" and not gated.cognition.in_paper
    assert gated.cognition.formula == "B ⊙ (1 − (1 − β)·S) (a variant, not in the paper)"


@pytest.mark.parametrize(("preset", "similarity", "rows"), [
    (None, "correlation", True), ("gated", "correlation", True), ("paper", "euclidean", False),
])
def test_a_presets_spectral_options_reach_the_clustering(spec, cat_and_coffee, preset, similarity, rows):
    """Choosing spectral clustering with a preset clusters with that preset's similarity: the
    labels are those of spectral_clustering called with the similarity written here."""
    x = spec.preprocess(cat_and_coffee)
    maps = clustercam.ClusterCAM(spec, q=4)(x).activations[0]
    cam = clustercam.ClusterCAM(spec, preset=preset, clustering="spectral", q=4)
    assert {k: cam.clustering_options[k] for k in ("similarity", "normalize_rows")} == {"similarity": similarity, "normalize_rows": rows}
    points = maps.flatten(1).float()
    expected = spectral_clustering(points, 4, seed=0, n_init=4, map_shape=tuple(maps.shape[-2:]),
                                   similarity=similarity, normalize_rows=rows).labels
    assert torch.equal(cam.cluster(maps), expected)
    other = "euclidean" if similarity != "euclidean" else "correlation"
    different = spectral_clustering(points, 4, seed=0, n_init=4, map_shape=tuple(maps.shape[-2:]),
                                    similarity=other, normalize_rows=rows).labels
    assert not torch.equal(expected, different)  # the choice matters on this image
    # given explicitly, an option still wins over the preset's
    explicit = clustercam.ClusterCAM(spec, preset=preset, clustering="spectral", q=4, similarity=other)
    assert explicit.clustering_options["similarity"] == other


def test_spectral_separates_the_cat_from_the_cup(spec, cat_and_coffee):
    """Spectral clustering as a user picks it puts the cat's heat on the cat and the cup's on the cup."""
    from .conftest import left_share

    x = spec.preprocess(cat_and_coffee)
    result = clustercam.ClusterCAM(spec, clustering="spectral")(x, spec.class_index("Egyptian cat"))
    cup = result.retarget(spec.class_index("espresso"))
    assert left_share(result.heatmaps[0]) > 0.8
    assert left_share(cup.heatmaps[0]) < 0.2


# ---- what an explanation says about itself ---------------------------------------------------------


def test_the_summary_names_the_formula_computed(spec, chelsea):
    from clustercam.pipeline import explain_image

    for preset, in_paper, formula in (("eq22", True, "β·B − (1 − β)·S (eq. 22)"),
                                      ("gated", False, "B ⊙ (1 − (1 − β)·S) (a variant, not in the paper)")):
        data = explain_image(spec, chelsea.resize((160, 160)), preset=preset).summary()
        assert (data["combination"], data["in_paper"], data["formula"]) == (PRESETS[preset]["combination"], in_paper, formula)
        assert data["preset"] == preset and data["clustering"] == "kmeans"


def test_beta_acts_under_the_default_and_barely_under_gated(spec, cat_and_coffee):
    x = spec.preprocess(cat_and_coffee)
    default = clustercam.ClusterCAM(spec)(x)
    gated = default.recombine(combination="gated")
    # measured on this photograph: eq. 22 at β = 0.5 changes the map by 0.13 of its mass, gated by 0.013
    half = float(default.beta_effect(0.5)[0])
    assert half > clustercam.methods.cluster.INERT_BETA and float(gated.beta_effect(0.5)[0]) < half / 5
    # at β = 0 eq. 22 keeps only −(scissors), which the ReLU empties; gated keeps most of the base
    assert float(default.beta_effect(0.0)[0]) == pytest.approx(1.0) and float(gated.beta_effect(0.0)[0]) < 0.5


def test_beta_tradeoff_is_one_batched_pass_and_equals_the_metric(spec, chelsea):
    x = spec.preprocess(chelsea.resize((192, 192)))
    cam = clustercam.ClusterCAM(spec)
    result = cam(x)
    betas = (0.5, 0.8, 1.0)
    with counted_images(spec.model) as seen:
        tradeoff = cam.beta_tradeoff(x, result, betas)
    assert seen["images"] == len(betas)
    for index, beta in enumerate(betas):
        _, o = metrics.explanation_scores(spec.model, x, result.reweight(beta).heatmaps, result.targets)
        assert abs(float(o[0]) - float(tradeoff.kept[0, index])) < 1e-5
        assert tradeoff.at(beta) == float(tradeoff.kept[0, index])
    assert abs(float(tradeoff.full[0]) - float(result.probabilities[0, result.targets[0]])) < 1e-6
    with pytest.raises(KeyError):
        tradeoff.at(0.25)
    with pytest.raises(ValueError, match="β must be between 0 and 1"):
        cam.beta_tradeoff(x, result, (1.5,))
