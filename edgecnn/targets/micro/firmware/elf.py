"""Flash and RAM of a linked firmware image, read from its ELF file (no binutils needed).

The figures are the ones ``arm-none-eabi-size`` prints, by section flags: ``text`` is every allocated section that is
not writable (code, read-only data, the model's array, the vector table), ``data`` the allocated writable sections
with contents (initialised variables: in RAM, their initial values in flash too), ``bss`` the allocated sections
without contents (zeroed variables, the tensor arena among them). Flash = text + data; RAM = data + bss + the stack
the linker script reserves.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import TargetUnavailableError

_SHF_WRITE = 0x1
_SHF_ALLOC = 0x2
_SHT_SYMTAB = 2
_SHT_NOBITS = 8


@dataclass(frozen=True)
class FirmwareSizes:
    """What a linked firmware takes of a board's memory, in bytes.

    Attributes:
        text: code and read-only data (the model's array among them), in flash.
        data: initialised variables: in RAM, and their initial values in flash.
        bss: zero-initialised variables in RAM, the tensor arena among them.
        arena: the tensor arena (part of ``bss``).
        stack: the stack the linker script reserves (on top of ``bss``).
    """

    text: int
    data: int
    bss: int
    arena: int
    stack: int

    @property
    def flash(self) -> int:
        """Flash the firmware takes: text + data."""
        return self.text + self.data

    @property
    def ram(self) -> int:
        """RAM the firmware takes: data + bss (arena included) + the reserved stack."""
        return self.data + self.bss + self.stack

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with ``flash_bytes`` and ``ram_bytes``."""
        return {**asdict(self), "flash_bytes": self.flash, "ram_bytes": self.ram}


def firmware_sizes(elf: Path) -> FirmwareSizes:
    """Read the sizes of a 32-bit little-endian ELF firmware edgecnn linked.

    The arena is the symbol whose name ends in ``tensor_arena``; the stack is ``__StackTop - __StackLimit`` (the
    start-up's linker script), 0 for a host build.

    Raises:
        TargetUnavailableError: the file is not such an ELF (the build produced something else).
    """
    data = elf.read_bytes()
    if len(data) < 52 or data[:6] != b"\x7fELF\x01\x01":
        raise TargetUnavailableError(f"{elf} is not a 32-bit little-endian ELF file: rebuild the firmware")
    (shoff,) = struct.unpack_from("<I", data, 32)
    shentsize, shnum = struct.unpack_from("<HH", data, 46)
    if shentsize < 40 or shoff + shnum * shentsize > len(data):
        raise TargetUnavailableError(f"{elf} has a truncated section table: rebuild the firmware")
    sections = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    text = data_bytes = bss = 0
    for _name, kind, flags, _addr, _offset, size, *_ in sections:
        if not flags & _SHF_ALLOC:
            continue
        if kind == _SHT_NOBITS:
            bss += size
        elif flags & _SHF_WRITE:
            data_bytes += size
        else:
            text += size
    symbols = _symbols(data, sections)
    arenas = [size for name, (_, size) in symbols.items() if name.endswith(("tensor_arena", "tensor_arenaE"))]
    arena = max(arenas, default=0)
    top, limit = symbols.get("__StackTop"), symbols.get("__StackLimit")
    stack = top[0] - limit[0] if top is not None and limit is not None else 0
    return FirmwareSizes(text=text, data=data_bytes, bss=bss, arena=arena, stack=stack)


def _symbols(data: bytes, sections: list[tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """Every named symbol: name -> (value, size)."""
    found: dict[str, tuple[int, int]] = {}
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != _SHT_SYMTAB or entsize < 16 or link >= len(sections):
            continue
        strings_offset, strings_size = sections[link][4], sections[link][5]
        strings = data[strings_offset : strings_offset + strings_size]
        for i in range(size // entsize):
            name_at, value, symbol_size = struct.unpack_from("<III", data, offset + i * entsize)
            end = strings.find(b"\0", name_at)
            if name_at and end > name_at:
                found[strings[name_at:end].decode("ascii", "replace")] = (value, symbol_size)
    return found
