"""Training data: datasets, synthetic forgeries, augmentation, file reading.

Mask convention throughout: numpy masks are ``bool`` [H, W] with True =
forged; dataset tensors are float32 [1, S, S] with 1 = forged; mask files
are 8-bit images with 255 (any value > 127) = forged.
"""

from .augment import (
    AugmentConfig,
    AugmentParams,
    Augmented,
    apply_augment,
    augment,
    jpeg_compress,
    sample_augment_params,
)
from .datasets import (
    DatasetConfig,
    FolderDataset,
    JsonListDataset,
    NpyListDataset,
    PairDataset,
    SyntheticDataset,
)
from focal._datasets import FilePair, pairs_from_folders, read_json_file_list, read_npy_file_list
from .io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, decode_image, read_image, read_mask
from .manipulations import Forgery, Placement, composite, inpaint_region, place_region, similarity_matrix
from .photos import Split, list_images, split_by_file
from .regions import load_segmentations, pick_segment, random_polygon_mask, resize_region
from .resize import resize_image, resize_mask, to_tensors
from .synthetic import MANIPULATIONS, SyntheticConfig, SyntheticForgeryGenerator, SyntheticSample

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MANIPULATIONS",
    "AugmentConfig",
    "AugmentParams",
    "Augmented",
    "DatasetConfig",
    "FilePair",
    "FolderDataset",
    "Forgery",
    "JsonListDataset",
    "NpyListDataset",
    "PairDataset",
    "Placement",
    "Split",
    "SyntheticConfig",
    "SyntheticDataset",
    "SyntheticForgeryGenerator",
    "SyntheticSample",
    "apply_augment",
    "augment",
    "composite",
    "decode_image",
    "inpaint_region",
    "jpeg_compress",
    "list_images",
    "load_segmentations",
    "pairs_from_folders",
    "pick_segment",
    "place_region",
    "random_polygon_mask",
    "read_image",
    "read_json_file_list",
    "read_mask",
    "read_npy_file_list",
    "resize_image",
    "resize_mask",
    "resize_region",
    "sample_augment_params",
    "similarity_matrix",
    "split_by_file",
    "to_tensors",
]
