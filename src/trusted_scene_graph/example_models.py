"""The model each weights-loading backend suggests downloading when its weights are missing (``hf download ID
--local-dir DIR``). Kept here, importing nothing, so that ``tsg`` (whose ``--help`` stays light) and the labeller's
up-front weights check name them without importing the backends, which import torch."""

GROUNDING_DINO_EXAMPLE_ID = "IDEA-Research/grounding-dino-tiny"
MONOCULAR_DEPTH_EXAMPLE_ID = "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
GENERATIVE_VLM_EXAMPLE_ID = "HuggingFaceTB/SmolVLM-256M-Instruct"
CONTRASTIVE_VLM_EXAMPLE_ID = "google/siglip-base-patch16-224"
