"""The platform as Linux's own drivers find it: the memory controllers through skx_edac (four
DIMMs with ECC, each where the SMBIOS names it) and a corrected memory error injected from
the host, counted by EDAC against its DIMM; Turbo Boost through intel_pstate."""

import real_imac_pro
from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)

EDAC = "/sys/devices/system/edac/mc"
# EDAC's DIMM index is channel * 2 + slot on each controller (skx_edac: 3 channels, 2 slots).
EDAC_DIMM = {"A0": ("mc0", "dimm0"), "B0": ("mc0", "dimm2"), "C0": ("mc1", "dimm0"),
             "D0": ("mc1", "dimm2")}


def test_edac_sees_the_dimms_and_counts_an_injected_corrected_error(signed_guest):
    create("pro", "--cpu", "8", "--memory", "64")
    started = imacpro("boot", "pro", "--detach", timeout=300)
    assert started.returncode == 0, started.stderr
    try:
        listing = imacpro("exec", "pro", f"cd {EDAC} && for d in mc*/dimm*; do "
                          "echo $d $(cat $d/size $d/dimm_label $d/dimm_edac_mode "
                          "$d/dimm_mem_type $d/dimm_ce_count); done; cat mc0/mc_name")
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        dimms = {line.split()[0]: line.split()[1:] for line in lines[:-1]}
        assert lines[-1] == "Skylake Socket#0 IMC#0"
        for mc, dimm in EDAC_DIMM.values():                 # 16 GB each, SECDED, DDR4
            size, label, mode, kind, ce = dimms[f"{mc}/{dimm}"]
            assert (size, mode, ce) == ("16384", "SECDED", "0") and kind.endswith("DDR4"), dimms
            assert label.startswith("CPU_SrcID#0_MC#")
        assert len(dimms) == 4, dimms

        # What lspci lists, from sysfs: the real machine's functions but those left out.
        listing = imacpro("exec", "pro", "cd /sys/bus/pci/devices && for d in *; do "
                          "echo $d $(cat $d/vendor $d/device $d/class); done")
        seen = {line.split()[0][5:]: tuple(int(v, 16) for v in line.split()[1:])
                for line in listing.stdout.splitlines()}
        real = real_imac_pro.real_functions(8)
        for address, ids in real.items():
            if address not in real_imac_pro.ABSENT:
                assert seen.get(address) == ids, (address, seen.get(address))
        assert not set(seen) & set(real_imac_pro.ABSENT)

        injected = imacpro("inject", "pro", "ecc", "--dimm", "C0", "--correctable")
        assert injected.returncode == 0, injected.stderr
        assert "CPU1_DIMM_C0" in injected.stdout
        mc, dimm = EDAC_DIMM["C0"]
        counted = imacpro("exec", "pro", f"for i in $(seq 100); do "
                          f"[ $(cat {EDAC}/{mc}/{dimm}/dimm_ce_count) = 1 ] && break; "
                          f"sleep 0.2; done; cat {EDAC}/{mc}/ce_count {EDAC}/{mc}/{dimm}/"
                          f"dimm_ce_count {EDAC}/mc0/ce_count; dmesg | grep 'CE memory read'")
        assert counted.stdout.splitlines()[:3] == ["1", "1", "0"], counted.stdout
        assert "MC#1_Chan#0_DIMM#0" in counted.stdout

        # 0x1001000: its 4 KiB line (0x1001) is interleaved onto the second channel, B0.
        wrong = imacpro("inject", "pro", "ecc", "--dimm", "A0", "--correctable",
                        "--address", "0x1001000")
        assert wrong.returncode == 2 and "is on B0" in wrong.stderr, wrong.stderr

        # Turbo Boost: intel_pstate with HWP, the W-2140B's 3.2 GHz base and 4.2 GHz turbo.
        cpufreq = imacpro("exec", "pro", "cd /sys/devices/system/cpu/cpu5/cpufreq && cat "
                          "scaling_driver base_frequency cpuinfo_max_freq cpuinfo_min_freq; "
                          "dmesg | grep -c 'intel_pstate: HWP enabled'")
        assert cpufreq.stdout.split() == ["intel_pstate", "3200000", "4200000", "1200000",
                                          "1"], cpufreq.stdout
    finally:
        imacpro("stop", "pro", "--force")
