"""A quantized GGUF rewritten with every tensor in float32 (same metadata, same tensor order and layout).

Used to compare llama.cpp with PEFT on equal terms: transformers dequantizes a GGUF to float32
when it loads one, so an F32 copy of the same file gives llama.cpp the very same weights, and
the remaining difference between the two is the adapter's export (and float rounding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kb.errors import ModelError

ALL_F32 = 0  # llama_ftype LLAMA_FTYPE_ALL_F32


def _copy_field(writer: Any, field: Any) -> None:
    from gguf import GGUFValueType

    main = field.types[0]
    value = field.contents()
    if main == GGUFValueType.ARRAY:
        writer.add_key_value(field.name, value, main, sub_type=field.types[-1])
    else:
        writer.add_key_value(field.name, value, main)


def dequantize_gguf(src: Path, dst: Path) -> Path:
    """Write `dst`: `src` with all tensors dequantized to float32."""
    try:
        import gguf
    except ImportError as error:
        raise ModelError("the `gguf` package is missing; install the finetune extra") from error
    reader = gguf.GGUFReader(str(src))
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(str(dst), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        _copy_field(writer, field)
    writer.add_file_type(ALL_F32)
    for tensor in reader.tensors:
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        # GGUF lists dimensions fastest-first; numpy wants them the other way round.
        writer.add_tensor(tensor.name, data.reshape(tuple(int(d) for d in reversed(tensor.shape))))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst
