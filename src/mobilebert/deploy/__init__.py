"""Deployment: the fast inference module, ONNX export with a parity gate, int8, and the latency benchmark."""

from .onnx import ExportError, OnnxModel, export_checkpoint, export_onnx
from .optimize import FastMobileBert, optimize_for_inference
from .quantize import quantize_onnx, quantize_torch

__all__ = ["ExportError", "FastMobileBert", "OnnxModel", "export_checkpoint", "export_onnx",
           "optimize_for_inference", "quantize_onnx", "quantize_torch"]
