"""The page's prose: title, notes under the tabs, and "How it works" (the paper's §3.2)."""

from __future__ import annotations

from clustercam.methods import DEFAULT_BETA, DEFAULT_PRESET, DEFAULT_Q

#: LaTeX delimiters of every ``gr.Markdown`` that shows equations ($…$ inline, $$…$$ display).
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]

TITLE = """# Cluster-CAM explorer
Which pixels made the network decide? Cluster-CAM groups a layer's feature maps, asks the
network how much each group's region alone supports a class, and combines the best group
(*cognition base*) with the worst (*cognition scissors*).
Upload an image or pick an example, then press **Explain**.
"""

EXPLAIN_NOTE = f"""Press **Explain** (or an example). Then move **β** or pick another **class**
beside the heatmap: they redraw at once from the same explanation, with no new forward pass.
Default: the `{DEFAULT_PRESET}` preset, eq. 22 (Q = {DEFAULT_Q}, β = {DEFAULT_BETA}); the curve beside the
heatmap shows what each β keeps of the network's confidence."""

KEY = """**How to read the tiles**

The network's feature maps are grouped into **clusters**; each tile is one cluster's mean map.
Each cluster's map is used as a mask on the image, and the network scores what is left.

- **BASE** (solid blue frame): the cluster whose region alone best keeps the class — *what
  the network looks at*.
- **SCISSORS** (dashed orange frame): the cluster whose region alone worst keeps it — *what
  speaks least for the class*, cut away from the base.
- **β** mixes them: 1 = the base alone; lower β lets the scissors cut more.

<small>Paper: clusters eq. 18, scores eq. 19, base and scissors eqs. 20–21, heatmap eq. 22.</small>
"""

SHARE_NOTE = """**Share:** the link button copies an address that reopens this page with the same image,
settings and result (kept as long as the server keeps its files, about an hour).
**Download:** the zip holds every picture on this tab, the heatmap as `.npy` (float32, the
network's input size) and `summary.json` — what `clustercam explain` writes."""

COMPARE_NOTE = """Every method explains the same image, layer and class as the Explain tab (Cluster-CAM with
its Q, β and clustering). Under each heatmap: its **average drop** $100\\cdot\\max(0, Y-O)/Y$
(lower is better), where $Y$ is the class probability of the image and $O$ that of the image
masked by the heatmap; the table adds the time, the forward and backward passes and whether the
confidence **increased** ($O > Y$). Score-CAM and Ablation-CAM need one pass per feature map:
a comparison states its cost in network passes first, and one over this server's budget is
refused with the cheaper choice (so on a CPU they start unticked). **Stop** ends a running
comparison; Explain never waits for one."""

SWEEP_Q_NOTE = """**Number of clusters** (the paper's Fig. 6): Q = 2, 3, …, 8 with every other
setting as in the Explain tab. Each run is cached, so coming back to one of these Q values is free."""

SWEEP_LAYERS_NOTE = """**Depth** (the paper's Fig. 5): Cluster-CAM at several layers of the model.
To finish in reasonable time on a CPU only *block-level* layers are used (names with at most one
dot): the last one at each feature-map resolution (the end of each stage, for VGG-16 the layer
before each pooling), the default layer, then evenly spaced others up to the number chosen.
Early layers have few channels: a Q above a layer's channel count skips that layer."""

SWEEP_K_NOTE = """**Eigenvectors of spectral clustering** (the paper's Fig. 7): spectral
clustering with K = 1, 2, …, 8 eigenvectors of the normalised Laplacian (eqs. 10–17) and the Q, σ,
θ and seed of the Explain tab."""

HOW_IT_WORKS = r"""
## How Cluster-CAM works (§3.2 of the paper)

Let $X$ be the (preprocessed) image, $c$ the class to explain and $S_c(\cdot)$ the network's
softmax probability of $c$.

1. **Feature maps.** One forward pass captures the $N$ feature maps $F_1, \dots, F_N$ of the chosen
   layer (each $h \times w$).
2. **Clustering.** The maps are grouped into $Q$ clusters $\mathbb{Q}_1, \dots, \mathbb{Q}_Q$ with
   K-means (what the paper uses for its measurements, §4.3), or with spectral clustering on a
   similarity $S(i,j)$ (eq. 10) using the $K$ smoothest non-trivial eigenvectors of the graph
   Laplacian. The paper's eq. 17, $S(i,j) = \exp\{-\lVert F_i - F_j \rVert\}$, compares how
   *strongly* two maps fire; SSIM (eq. 10) or correlation compare *where* they fire, which is what
   lets base and scissors follow the class on a two-object image. Picking **Spectral** gives the
   similarity that separated objects best on the photographs the presets were chosen on; eq. 17
   stays selectable under "Spectral options" (and is what the `paper` preset uses).
3. **Cluster maps** (eq. 18), one representative map per cluster:
$$\tilde F_q = \operatorname{mean}\{F_n : n \in \mathbb{Q}_q\}, \qquad q = 1, \dots, Q.$$
4. **Scores** (eq. 19). Each $\tilde F_q$ is upsampled to the image size and scaled to $[0, 1]$
   (the mask $H_q$); the $Q$ masked images are scored in one batched forward pass:
$$y_q = S_c(H_q \circ X), \qquad \mathbf{y} = [y_1, \dots, y_Q]^T.$$
5. **Cognition base and scissors** (eqs. 20–21): the cluster whose region alone best keeps the
   class, and the one that worst keeps it:
$$\tilde F_{\text{base}} = \tilde F_{q_{\max}},\ q_{\max} = \arg\max_q y_q, \qquad \tilde F_{\text{scissors}} = \tilde F_{q_{\min}},\ q_{\min} = \arg\min_q y_q.$$
6. **Heatmap** (eq. 22), with the balance $\beta \in [0, 1]$:
$$H^{\text{Cluster}} = \beta\,\tilde F_{\text{base}} - (1 - \beta)\,\tilde F_{\text{scissors}}.$$
   The paper does not say how the two maps are scaled before they are subtracted, nor how the
   result is brought to $[0, 1]$. The default (`eq22`) puts both maps on one scale (each divided by
   its peak, so that $\beta$ alone sets the balance) and keeps the positive part: where the scissors
   outweigh the base, the pixel is cut away. **$\beta$ is the lesson:** $\beta = 1$ is the base
   alone, the faithful end (the image masked by it keeps most of the network's confidence);
   lowering $\beta$ cuts away more of what speaks least for the class, a sharper, more
   class-specific map, usually at some cost in the confidence kept. The curve beside the heatmap
   measures that trade-off on the image in front of you, in one batched pass. How the default was
   chosen, and how both ends of the knob measured on photographs the choice never saw, is in the
   project's `docs/benchmarks.md`. Other presets compute variants that are *not* in the paper and
   say so under the heatmap: `gated` keeps the base where the scissors are weak
   ($B \odot (1 - (1-\beta)S)$; very faithful, but $\beta$ barely acts), `weighted` weights every
   cluster map by its score; `paper` takes eq. 22 literally on the raw cluster means.

**Cost:** $1 + Q$ forward passes and no backward pass (Score-CAM needs $1 + N$, i.e. 1,281 for
EfficientNet-Lite0's last layer). Because the clusters do not depend on the class and the masked
passes give every class's probability, another **target** or another **β** costs no network work
at all: this app redraws them instantly.

In the pictures, the **base** cluster has a solid blue frame and the **scissors** cluster a dashed
orange one (the paper's Fig. 3 uses green and red, which look alike to many readers).
"""

TEACH = """## Two objects, one set of clusters
`cat_and_coffee.jpg` puts a cat (left) beside an espresso (right). Cluster-CAM clusters the maps
once; explaining *Egyptian cat* or *espresso* only re-reads the scores of the masked images.
Press the two buttons and watch which cluster is the base (solid frame) and which the scissors
(dashed frame)."""

NOTHING_TO_REDRAW = """Nothing to redraw yet: press **Explain**. (If a heatmap is on the page, the server has
since let go of this page's explanation, as it keeps a bounded number of sessions: press Explain again.)"""

WALK_INTRO = """**Step by step:** your image (the one in the settings, with its model, layer, Q and
class) through Cluster-CAM's five steps, one screen each. Press the button, then **Next →**."""

WALK_WAITING = "Press **Walk through my image** above."

#: One plain sentence per step (the equation numbers are shown under each screen).
WALK_STEPS = (
    "The network does not look at pixels but at **{channels} feature maps** of {height}×{width} cells "
    "(layer `{layer}`): each lights up where it found its own pattern. These are the {shown} most active.",
    "Maps that light up in the same places are **grouped into {q} clusters** ({smallest} to {largest} maps "
    "each); each cluster's average is one map. The tiles say how the network will score each cluster.",
    "Each cluster's map is used as a **mask**: the photograph is kept where the map is bright and greyed "
    "out elsewhere, and the network is asked again. The score under each tile is its confidence in "
    "**{name}** on that masked image: from {worst:.3f} to {best:.3f}.",
    "The cluster that keeps the most of **{name}** is the **base** (cluster {base}, {best:.3f}, solid "
    "frame); the one that keeps the least is the **scissors** (cluster {scissors}, {worst:.3f}, dashed "
    "frame): it marks what does *not* matter for this class.",
    "The heatmap is the base minus the scissors, balanced by **β** ({formula}); now β = {beta:.1f}. Drag "
    "the handle across the picture to compare it with the photograph; move β to trade what the network "
    "needs (β = 1) for a sharper, more class-specific map (lower β).",
)
