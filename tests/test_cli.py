import json
import subprocess
import sys

import pytest

from imacpro import bundle
from imacpro.cli import main


def run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_usage_error(capsys, *args, match=""):
    code, out, err = run(capsys, *args)
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("imacpro: error: "), err
    assert match in lines[0]
    return lines[0]


def test_acceptance_256gb_before_and_after_2019_03_19(capsys):
    assert_usage_error(capsys, "create", "pro", "--cpu", "18", "--memory", "256",
                       "--as-of", "2018-06-01", match="2019-03-19")
    code, _, _ = run(capsys, "create", "pro", "--cpu", "18", "--memory", "256",
                     "--as-of", "2019-06-01")
    assert code == 0
    code, out, _ = run(capsys, "info", "pro")
    assert code == 0
    for text in ("iMacPro1,1", "Total Number of Cores:      18", "36 threads", "2.3 GHz",
                 "256 GB DDR4 ECC"):
        assert text in out


def test_info_json(capsys):
    run(capsys, "create", "m", "--cpu", "14", "--graphics", "VEGA64", "--storage", "2tb")
    code, out, _ = run(capsys, "info", "m", "--json")
    info = json.loads(out)
    assert code == 0
    assert (info["model_identifier"], info["cores"], info["threads"]) == ("iMacPro1,1", 14, 28)
    assert info["processor_brand_string"] == "Intel(R) Xeon(R) W-2170B CPU @ 2.50GHz"
    assert (info["graphics"], info["storage_tb"]) == ("Radeon Pro Vega 64", 2)
    assert info["board_id"] == "Mac-7BA5B2D9E42DDD94"
    assert len(info["serial_number"]) == 12 and info["t2_ecid"].startswith("0x")


def test_create_json_and_list(capsys):
    code, out, _ = run(capsys, "create", "a", "--json")
    assert code == 0 and json.loads(out)["name"] == "a"
    run(capsys, "create", "b", "--cpu", "18")
    code, out, _ = run(capsys, "list", "--json")
    assert [r["name"] for r in json.loads(out)] == ["a", "b"]
    code, out, _ = run(capsys, "list")
    assert "a " in out and "18-core Xeon W-2191B" in out


def test_list_empty(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "No machines" in out
    assert json.loads(run(capsys, "list", "--json")[1]) == []


def test_list_shows_damaged_bundle_without_failing(capsys, imacpro_home):
    run(capsys, "create", "ok")
    run(capsys, "create", "broken")
    (imacpro_home / "machines" / "broken" / "config.toml").write_text("[[[")
    code, out, _ = run(capsys, "list")
    assert code == 0 and "damaged" in out and "ok " in out


def test_catalog(capsys):
    code, out, _ = run(capsys, "catalog")
    assert code == 0
    for text in ("W-2140B", "W-2191B", "2019-03-19", "2020-08-03", "Vega 64X", "4 TB",
                 "Mac-7BA5B2D9E42DDD94", "MQ2Y2"):
        assert text in out
    report = json.loads(run(capsys, "catalog", "--json")[1])
    assert [p["cpu"] for p in report["processors"]] == [8, 10, 14, 18]
    assert all(p["sources"] for p in report["processors"])


def test_delete(capsys):
    run(capsys, "create", "x")
    assert_usage_error(capsys, "delete", "x", match="--yes")  # no TTY in tests
    code, out, _ = run(capsys, "delete", "x", "--yes")
    assert code == 0
    assert_usage_error(capsys, "info", "x", match="no machine named 'x'")


@pytest.mark.parametrize("args,match", [
    (["create", "p", "--cpu", "12"], "--cpu"),
    (["create", "p", "--memory", "48"], "--memory"),
    (["create", "p", "--memory", "512"], "--third-party-memory"),
    (["create", "p", "--graphics", "vega20"], "--graphics"),
    (["create", "p", "--storage", "8TB"], "--storage"),
    (["create", "p", "--as-of", "2019-02-30"], "--as-of"),
    (["create", "p", "--as-of", "yesterday"], "--as-of"),
    (["create", "p", "--as-of", "2017-07-01"], "2017-12-14"),
    (["create", "p", "--as-of", "2022-01-01"], "delisted"),
    (["create", "p", "--cpu", "8", "--as-of", "2020-08-04"], "2020-08-03"),
    (["create", "p", "--graphics", "vega64x", "--as-of", "2019-01-01"], "2019-03-19"),
    (["create", "p", "--cpu", "18", "--as-of", "2021-03-10"], "no longer configurable"),
    (["create", "bad/name"], "invalid machine name"),
    (["create"], "NAME"),
    (["create", "p", "--frobnicate"], "--frobnicate"),
    (["info", "ghost"], "no machine named"),
    (["delete", "ghost", "--yes"], "no machine named"),
    (["explode"], "explode"),
    (["inject", "p", "ecc", "--dimm", "A0"], "--correctable or --uncorrectable"),
    (["inject", "p", "ecc", "--dimm", "E0", "--correctable"], "--dimm"),
    (["inject", "p", "ecc", "--dimm", "A0", "--uncorrectable", "--address", "x"], "--address"),
])
def test_every_error_path_is_one_line_exit_2(capsys, args, match):
    assert_usage_error(capsys, *args, match=match)


def test_duplicate_name(capsys):
    run(capsys, "create", "twin")
    assert_usage_error(capsys, "create", "twin", match="already exists")


def test_damaged_bundle_is_one_line(capsys, imacpro_home):
    run(capsys, "create", "dmg")
    (imacpro_home / "machines" / "dmg" / "identity.toml").write_text("ecid = ")
    line = assert_usage_error(capsys, "info", "dmg", match="identity.toml")
    assert "Traceback" not in line


def test_unwritable_home_is_one_line(capsys, imacpro_home):
    imacpro_home.write_text("a file where the home directory should be")
    assert_usage_error(capsys, "create", "x")


def test_installed_entry_point(imacpro_home):
    result = subprocess.run([sys.executable, "-m", "imacpro", "create", "p", "--cpu", "9"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    result = subprocess.run([sys.executable, "-m", "imacpro", "--version"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "imacpro" in result.stdout


def test_a_blank_ssd_has_nothing_to_boot(capsys):
    assert run(capsys, "create", "pro")[0] == 0
    assert_usage_error(capsys, "boot", "pro", "--exec", "true",
                       match="the internal SSD has no GPT (no partition table): nothing to boot")


def test_debian_goes_without_a_kernel_of_its_own(capsys, tmp_path):
    assert run(capsys, "create", "pro")[0] == 0
    assert_usage_error(capsys, "install", "pro", "--os", "debian", "--kernel", __file__,
                       "--password-file", __file__, "--yes", match="goes without --kernel")
    assert_usage_error(capsys, "install", "pro", "--os", "debian", "--yes",
                       match="--password-file, --ssh-key, or both")
    assert_usage_error(capsys, "bless", "ghost", match="no machine named")


def test_install_needs_confirmation_and_the_t2_judges_what_the_ssd_holds(capsys, tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"not signed by anyone" * 100)
    assert run(capsys, "create", "pro")[0] == 0
    assert_usage_error(capsys, "install", "pro", "--kernel", str(kernel),
                       match="without confirmation: pass --yes")
    code, out, err = run(capsys, "install", "pro", "--kernel", str(kernel), "--yes")
    assert code == 0 and "installed vmlinuz" in out, err
    code, out, err = run(capsys, "boot", "pro", "--exec", "true")
    assert code == 1 and "REFUSED" in err and "not signed" in err


def test_boot_options_that_do_not_go_together(capsys, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4096))
    assert run(capsys, "create", "pro")[0] == 0
    assert_usage_error(capsys, "boot", "pro", "--kernel", str(disk), "--disk", str(disk),
                       match="not both")
    assert_usage_error(capsys, "boot", "pro", "--external", match="--external goes with")
    assert_usage_error(capsys, "boot", "pro", "--network", "none", "--forward", "tcp:2222:22",
                       match="not with --network none")
    assert_usage_error(capsys, "boot", "pro", "--forward", "tcp:2222:22", "--forward",
                       "tcp:2222:80", match="each host port once")
    assert_usage_error(capsys, "boot", "pro", "--forward", "udp:53:53",
                       match="tcp:HOSTPORT:GUESTPORT")


def test_a_machine_in_use_cannot_be_booted_erased_installed_or_deleted(capsys):
    assert run(capsys, "create", "pro")[0] == 0
    held = bundle.open_bundle("pro")
    with held.in_use("testing"):
        for args in (("erase", "pro", "--yes"), ("delete", "pro", "--yes"),
                     ("install", "pro", "--yes", "--kernel", __file__),
                     ("boot", "pro", "--kernel", __file__, "--exec", "true")):
            code, _, err = run(capsys, *args)
            assert code == 2 and "is in use by another imacpro process" in err, (args, err)
    code, _, _ = run(capsys, "erase", "pro", "--yes")        # free again
    assert code == 0


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_host_threads_are_a_count_or_auto(capsys, imacpro_home, value):
    assert_usage_error(capsys, "boot", "pro", "--host-threads", value, match="--host-threads")


def test_host_threads_auto_is_one_per_host_core_and_no_more_than_the_vcpus():
    import os

    from imacpro.catalog import configure
    from imacpro.clock import Clock
    from imacpro.machine import Machine
    cores = len(os.sched_getaffinity(0))
    assert Machine(configure(cpu=8), clock=Clock(), cpus=1, host_threads=None).host_threads == 1
    assert Machine(configure(cpu=8), clock=Clock(), cpus=16,
                   host_threads=None).host_threads == min(cores, 16)
    assert Machine(configure(cpu=8), clock=Clock(), cpus=16).host_threads == 1
