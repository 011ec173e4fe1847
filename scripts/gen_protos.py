"""Compile protos/ into generated/ (or another folder) with grpcio-tools."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[Path]:
    """Every .proto under protos/, sorted so output is stable."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc for every proto, writing _pb2.py, _pb2.pyi and _pb2_grpc.py into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    for proto in proto_files():
        package_dir = out_dir / proto.relative_to(PROTO_ROOT).parent
        while package_dir != out_dir:
            (package_dir / "__init__.py").touch()
            package_dir = package_dir.parent


def main(argv: list[str] | None = None) -> None:
    """Entry point of `make protos`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "generated")
    args = parser.parse_args(argv)
    generate(args.out)
    print(
        f"generated {', '.join(str(p.relative_to(PROTO_ROOT)) for p in proto_files())} "
        f"into {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
