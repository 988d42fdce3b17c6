"""edgeseg: segmentation models from PyTorch to real-time video on the edge.

One distribution. ``plugins/`` installs as ``edgeseg.plugins`` and ``export/`` as
``edgeseg.export`` so there is a single import namespace.
"""

from setuptools import find_packages, setup

_MAPPED = {"edgeseg.plugins": "plugins", "edgeseg.export": "export"}
PACKAGES = find_packages(include=["edgeseg", "edgeseg.*"])
PACKAGE_DIR = {}
for package, folder in _MAPPED.items():
    for sub in [""] + find_packages(where=folder):
        name = f"{package}.{sub}" if sub else package
        PACKAGES.append(name)
        PACKAGE_DIR[name] = f"{folder}/{sub.replace('.', '/')}" if sub else folder

EXTRAS = {
    # Training / export workstation.
    "workstation": [
        "torch>=2.4",
        "onnx>=1.16",
        "onnxscript>=0.2",
        "onnxslim>=0.1.40",
        "onnxconverter-common>=1.14",
        "safetensors>=0.4",
    ],
    # A runtime box or a Jetson: no torch.
    "runtime": [
        "opencv-python-headless>=4.8",
        "onnxruntime>=1.18",
        "pillow>=9",
        "scipy>=1.10",
        "rich>=13",
        "tqdm>=4.60",
        "pyyaml>=6",
    ],
    # Everything the optional features of the CPU path use.
    "extras": [
        "matplotlib>=3.7",
        "pydicom>=2.4",
        "av>=11",
        "pycocotools>=2.0.7",
        "tflite>=2.10",
        "flatbuffers>=23",
    ],
    # GPU through CuPy (pick the wheel for your CUDA: cupy-cuda12x, cupy-cuda13x).
    "gpu": ["cupy-cuda12x>=13"],
    # Standard TensorRT comes with JetPack or NVIDIA's own packages (see docs/jetson.md): no PyPI route.
    # TensorRT for RTX (RTX GPUs; its builder also runs with no GPU, which CI uses) is on PyPI.
    "rtx": ["tensorrt-rtx-cu13>=1.7"],
    "dev": [
        "pytest>=8",
        "hypothesis>=6",
        "ruff>=0.5",
        "scikit-image>=0.22",
        "ai-edge-litert>=1.0",
        "pydicom-data>=1.0",
        "pydensecrf2>=1.1",
        # The real CUDA-side libraries that run without a GPU: CuPy's API and NVRTC compile our kernels.
        "cupy-cuda13x>=14",
        "nvidia-cuda-nvrtc>=13",
    ],
}

setup(
    name="edgeseg",
    version="0.1.0",
    description="Segmentation models from PyTorch to real-time video on the edge",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        "edgeseg": ["assets/*.safetensors", "assets/*.onnx", "assets/*.json"],
        "edgeseg.plugins": ["**/*.cu", "**/*.cuh", "**/*.h", "**/*.cpp", "**/*.md"],
    },
    install_requires=["numpy>=1.23"],
    extras_require={**EXTRAS, "cpu": sorted({d for k in ("workstation", "runtime", "extras") for d in EXTRAS[k]})},
    entry_points={"console_scripts": ["edgeseg=edgeseg.cli:main"]},
)
