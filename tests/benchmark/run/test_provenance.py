"""The machine facts recorded with every cell's timings."""
from __future__ import annotations

import platform

from benchmark.run.provenance import cpu_description, environment_info

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 sha_ni

processor\t: 1
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 sha_ni
"""


def test_cpu_description_names_the_model_and_the_timing_flags_it_has(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    assert cpu_description(cpuinfo) == "AMD EPYC 9R14; avx2 avx512f avx512_bf16"


def test_cpu_description_says_when_no_timing_flag_is_present(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Old CPU\nflags\t\t: fpu sse2\n")
    assert cpu_description(cpuinfo) == "Old CPU; none of avx2 avx512f avx512_bf16 amx_tile amx_bf16"


def test_cpu_description_without_cpuinfo_falls_back_to_the_platform(tmp_path):
    assert cpu_description(tmp_path / "absent") == (platform.processor() or platform.machine())


def test_environment_info_records_the_cpu():
    assert environment_info()["cpu"] == cpu_description()
