"""A target task as in-memory tensors: built-in, torchvision, arrays or image folders."""

from ncap.data.dataset import ImageDataset, hold_out, resize_images
from ncap.data.folders import dataset_from_arrays, load_image_folder
from ncap.data.inputs import InputSpec
from ncap.data.registry import list_datasets, load_dataset

__all__ = [
    "ImageDataset",
    "InputSpec",
    "dataset_from_arrays",
    "hold_out",
    "list_datasets",
    "load_dataset",
    "load_image_folder",
    "resize_images",
]
