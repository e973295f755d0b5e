"""Accelerator types as Ray names them (NVML product name -> Ray's constant), and a node
without a GPU advertising none (rayops.node.accelerators, rayops.node.processes)."""

from __future__ import annotations

import pytest

from rayops.node.accelerators import accelerator_type_from_name, detect_accelerator_type
from rayops.node.processes import NodeOptions, node_resources


@pytest.mark.parametrize(
    ("product_name", "expected"),
    [
        # Ray 2.60's names for the same NVML strings (checked side by side)
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H20", "H20"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GB200", "GB200"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("Tesla T4", "T4"),
        ("Tesla P100-PCIE-16GB", "P100"),
        ("Tesla K80", "K80"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX-PRO-6000"),
        ("Quadro RTX 6000", "RTX-6000"),
        # consumer cards: no all-capital model token, so the product name without the vendor
        ("NVIDIA GeForce RTX 5090", "GeForce-RTX-5090"),
        ("NVIDIA GeForce RTX 3090", "GeForce-RTX-3090"),
        ("", None),
        (None, None),
    ],
)
def test_product_name_to_accelerator_type(product_name: str | None, expected: str | None) -> None:
    assert accelerator_type_from_name(product_name) == expected


def test_no_gpu_here_means_no_accelerator_type() -> None:
    """This machine has no NVIDIA driver (and maybe no nvidia-ml-py): detection gives None."""
    assert detect_accelerator_type() is None


def test_type_is_advertised_with_gpus_only() -> None:
    with_gpu = node_resources(NodeOptions(num_cpus=1, num_gpus=1), 2**20, "A100")
    assert with_gpu["accelerator_type:A100"] == 1.0 and with_gpu["GPU"] == 1.0
    without = node_resources(NodeOptions(num_cpus=1, num_gpus=0), 2**20, "A100")
    assert not any(k.startswith("accelerator_type:") for k in without)
    none_found = node_resources(NodeOptions(num_cpus=1, num_gpus=1), 2**20, None)
    assert not any(k.startswith("accelerator_type:") for k in none_found)


def test_nvml_present_without_a_driver_means_no_accelerator_type() -> None:
    """With nvidia-ml-py installed (``rayops[gpu]``) but no NVIDIA driver, NVML fails to start
    and the node has no accelerator type, rather than an error."""
    pytest.importorskip("pynvml")
    assert detect_accelerator_type() is None
