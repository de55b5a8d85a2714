"""Which accelerators Vertex AI attaches to which machine types, checked before any request.

Vertex AI rejects a mismatched pair only after the job is queued, so the pairs are checked here,
with a message naming the flag. The table follows Vertex AI's "Configure compute resources for
custom training": N1 takes attachable GPUs (T4, V100, P100, P4) in fixed counts; A2/A3/G2 have
theirs built in (the machine type fixes type and count); TPUs are ``cloud-tpu`` with TPU_V2/V3 x
8 or a TPU VM type whose topology the type implies (v6e ``ct6e-*`` is refused: Vertex AI lists no
TensorFlow support for it). Pure functions of strings and ints: the tests need no cloud.
"""

from __future__ import annotations

import dataclasses
import re

# Attachable GPUs on N1 machines -> counts Vertex AI allows.
_N1_GPUS = {
    "NVIDIA_TESLA_T4": (1, 2, 4),
    "NVIDIA_TESLA_V100": (1, 2, 4, 8),
    "NVIDIA_TESLA_P100": (1, 2, 4),
    "NVIDIA_TESLA_P4": (1, 2, 4),
}
# Machine families whose GPUs are built in: regex on the machine type -> (accelerator, count fn).
_BUNDLED = (
    (re.compile(r"^a2-highgpu-(1|2|4|8)g$"), "NVIDIA_TESLA_A100", lambda m: int(m.group(1))),
    (re.compile(r"^a2-megagpu-16g$"), "NVIDIA_TESLA_A100", lambda m: 16),
    (re.compile(r"^a2-ultragpu-(1|2|4|8)g$"), "NVIDIA_A100_80GB", lambda m: int(m.group(1))),
    (re.compile(r"^a3-highgpu-(1|2|4|8)g$"), "NVIDIA_H100_80GB", lambda m: int(m.group(1))),
    (re.compile(r"^a3-megagpu-8g$"), "NVIDIA_H100_MEGA_80GB", lambda m: 8),
    (re.compile(r"^g2-standard-(4|8|12|16|32)$"), "NVIDIA_L4", lambda m: 1),
    (re.compile(r"^g2-standard-24$"), "NVIDIA_L4", lambda m: 2),
    (re.compile(r"^g2-standard-48$"), "NVIDIA_L4", lambda m: 4),
    (re.compile(r"^g2-standard-96$"), "NVIDIA_L4", lambda m: 8),
)
# Which machine family a GPU needs, for the error message when it is put on the wrong one.
_FAMILY_OF = {
    **{gpu: "n1-standard-*, n1-highmem-* or n1-highcpu-*" for gpu in _N1_GPUS},
    "NVIDIA_TESLA_A100": "a2-highgpu-{1,2,4,8}g or a2-megagpu-16g",
    "NVIDIA_A100_80GB": "a2-ultragpu-{1,2,4,8}g",
    "NVIDIA_H100_80GB": "a3-highgpu-{1,2,4,8}g",
    "NVIDIA_H100_MEGA_80GB": "a3-megagpu-8g",
    "NVIDIA_L4": "g2-standard-*",
}
_LEGACY_TPUS = ("TPU_V2", "TPU_V3")
# TPU VM machine types -> (chips, default topology). v5e/v6e have one TensorCore per chip, so a
# TPUStrategy sees one replica per chip.
_TPU_VMS = {
    "ct5lp-hightpu-1t": (1, "1x1"),
    "ct5lp-hightpu-4t": (4, "2x2"),
    "ct5lp-hightpu-8t": (8, "2x4"),
    "ct6e-standard-1t": (1, "1x1"),
    "ct6e-standard-4t": (4, "2x2"),
    "ct6e-standard-8t": (8, "2x4"),
}
# TPU VM types whose TPU generation Vertex AI lists without TensorFlow support ("Training with
# TPU accelerators": v6e runs JAX and PyTorch only). The trainer is TensorFlow, so a job there
# could only fail after the machine is provisioned.
_NO_TENSORFLOW = {machine for machine in _TPU_VMS if machine.startswith("ct6e-")}
_N1 = re.compile(r"^n1-(standard|highmem|highcpu)-\d+$")
_CPU_FAMILIES = re.compile(r"^(n1|n2|n2d|e2|c2|c2d|c3|m1)-[a-z0-9-]+$")


@dataclasses.dataclass(frozen=True)
class Hardware:
    """One replica's machine, resolved and checked."""

    machine_type: str
    accelerator_type: str = ""  # "" = none, else an aiplatform_v1.AcceleratorType name
    accelerator_count: int = 0
    tpu_topology: str = ""
    kind: str = "cpu"  # "cpu" | "gpu" | "tpu"
    replicas: int = 1  # tf.distribute replicas on this one machine (GPUs or TPU cores)


def resolve(machine_type: str, accelerator_type: str = "", accelerator_count: int = 0,
            tpu_topology: str = "", flag_prefix: str = "") -> Hardware:
    """Checks a machine/accelerator combination; raises ValueError naming the offending flag.

    ``flag_prefix`` lets the serving command reuse this with its own flag names.
    For machines with built-in GPUs an accelerator count of 0 means "what the machine has".
    """
    mt, acc, count = (machine_type or "").strip(), (accelerator_type or "").strip().upper(), \
        int(accelerator_count or 0)
    f_mt, f_acc, f_cnt = (f"--{flag_prefix}{n}" for n in
                          ("machine_type", "accelerator_type", "accelerator_count"))
    if not mt:
        raise ValueError(f"{f_mt} is required (e.g. n1-standard-8, a2-highgpu-1g, g2-standard-8)")
    if count < 0:
        raise ValueError(f"{f_cnt}={count}: must be >= 0")
    if acc == "NVIDIA_TESLA_K80":
        raise ValueError(f"{f_acc}=NVIDIA_TESLA_K80: K80s are retired on Vertex AI; use "
                         "NVIDIA_TESLA_T4 (n1-*) or NVIDIA_L4 (g2-*)")

    if mt == "cloud-tpu" or mt in _TPU_VMS or acc.startswith("TPU"):
        return _resolve_tpu(mt, acc, count, tpu_topology, f_mt, f_acc, f_cnt)
    if tpu_topology:
        raise ValueError(f"--{flag_prefix}tpu_topology={tpu_topology} only applies to TPU "
                         f"machine types, not {f_mt}={mt}")

    for pattern, gpu, count_of in _BUNDLED:
        match = pattern.match(mt)
        if match:
            built_in = count_of(match)
            if acc and acc != gpu:
                raise ValueError(f"{f_acc}={acc} does not fit {f_mt}={mt}: that machine comes "
                                 f"with {built_in} x {gpu}. {_where(acc)}")
            if count and count != built_in:
                raise ValueError(f"{f_cnt}={count} does not fit {f_mt}={mt}, which has exactly "
                                 f"{built_in} x {gpu} (leave {f_cnt} at 0 or set {built_in})")
            return Hardware(mt, gpu, built_in, kind="gpu", replicas=built_in)

    if acc:
        if acc not in _N1_GPUS:
            raise ValueError(f"{f_acc}={acc} does not fit {f_mt}={mt}. {_where(acc)}")
        if not _N1.match(mt):
            raise ValueError(f"{f_acc}={acc} does not fit {f_mt}={mt}: {acc} attaches only to "
                             f"{_FAMILY_OF[acc]} machines")
        allowed = _N1_GPUS[acc]
        if count not in allowed:
            raise ValueError(f"{f_cnt}={count} is not allowed for {acc}: use one of "
                             f"{', '.join(map(str, allowed))}")
        return Hardware(mt, acc, count, kind="gpu", replicas=count)

    if count:
        raise ValueError(f"{f_cnt}={count} given without {f_acc}")
    if not _CPU_FAMILIES.match(mt):
        raise ValueError(f"{f_mt}={mt} is not a machine type this tool knows; GPU machines are "
                         "n1-* (+ --accelerator_type), a2-*, a3-*, g2-*; TPUs cloud-tpu or "
                         "ct5lp-hightpu-*")
    return Hardware(mt)


def _resolve_tpu(mt, acc, count, topology, f_mt, f_acc, f_cnt) -> Hardware:
    if mt == "cloud-tpu":
        if acc not in _LEGACY_TPUS:
            raise ValueError(
                f"{f_mt}=cloud-tpu needs {f_acc}=TPU_V2 or TPU_V3 (got {acc or 'none'})")
        if count != 8:
            raise ValueError(f"{f_cnt}={count}: {acc} on cloud-tpu comes as 8 cores; set {f_cnt}=8")
        if topology:
            raise ValueError(f"--tpu_topology does not apply to {f_mt}=cloud-tpu")
        return Hardware(mt, acc, 8, kind="tpu", replicas=8)
    if mt in _TPU_VMS:
        chips, default_topology = _TPU_VMS[mt]
        if mt in _NO_TENSORFLOW:
            raise ValueError(f"{f_mt}={mt} is a TPU v6e, for which Vertex AI lists no TensorFlow "
                             "support (JAX and PyTorch only); this trainer is TensorFlow: use "
                             "ct5lp-hightpu-{1,4,8}t (TPU v5e) or cloud-tpu with TPU_V3")
        if acc or count:
            raise ValueError(f"{f_mt}={mt} names its TPU (v5e/v6e, {chips} chips): leave {f_acc} "
                             f"and {f_cnt} unset; the topology ({default_topology}) goes in "
                             "--tpu_topology")
        topology = topology or default_topology
        if topology != default_topology:
            raise ValueError(f"--tpu_topology={topology} does not fit {f_mt}={mt} "
                             f"({chips} chips -> {default_topology})")
        return Hardware(mt, tpu_topology=topology, kind="tpu", replicas=chips)
    raise ValueError(f"{f_acc}={acc} does not fit {f_mt}={mt}: TPU_V2/TPU_V3 need "
                     f"{f_mt}=cloud-tpu with {f_cnt}=8; TPU v5e uses {f_mt}=ct5lp-hightpu-*t")


def _where(acc: str) -> str:
    family = _FAMILY_OF.get(acc)
    if family:
        return f"{acc} needs {family}."
    known = sorted(_FAMILY_OF) + list(_LEGACY_TPUS)
    return f"Known accelerator types: {', '.join(known)}."
