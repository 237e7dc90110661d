"""Reports for people and scripts: a machine's hardware overview and the whole catalog.

Each report is a plain dict (what `--json` prints) plus a text rendering in the style of macOS's
System Information "Hardware Overview".
"""

from __future__ import annotations

from imacpro.catalog import Configuration, data
from imacpro.devices.nvme import apple_model, ssd_serial
from imacpro.identity import Identity


def _mb(kib: int) -> str:
    return f"{kib / 1024:g} MB"


def hardware_overview(name: str, config: Configuration, ident: Identity,
                      display_mode: str = "compat") -> dict:
    p = config.processor
    mem = config.memory_option
    gfx = config.graphics_option
    window = config.sale_window()
    return {
        "name": name,
        "model_name": data.MODEL["model_name"].value,
        "model_identifier": data.MODEL["model_identifier"].value,
        "model_number": data.MODEL["model_number"].value,
        "processor_name": p.marketing_name,
        "processor_model": f"Xeon {p.name}",
        "processor_brand_string": p.brand_string,
        "processor_speed_ghz": p.base_ghz,
        "turbo_boost_ghz": p.turbo_ghz,
        "processors": 1,
        "cores": p.cores,
        "threads": p.threads,
        "l2_cache_per_core_kib": p.l2_per_core_kib,
        "l3_cache_kib": p.l3_kib,
        "memory_gb": config.memory,
        "memory_modules": f"{data.MEMORY_SLOTS} × {mem.dimm_gb} GB",
        "memory_type": data.MEMORY_TYPE,
        "memory_ecc": data.MEMORY_ECC,
        "memory_speed_mts": data.MEMORY_SPEED_MTS,
        "memory_supplier": "Apple" if not config.third_party_memory else "third-party (non-Apple)",
        "graphics": gfx.name,
        "graphics_memory_gb": gfx.vram_gb,
        "graphics_memory_type": gfx.vram_type,
        "storage_tb": config.storage_option.capacity_tb,
        "storage_bytes": config.storage_option.capacity_bytes,
        "storage_model": apple_model(config.storage_option.capacity_bytes),
        "storage_serial": ssd_serial(ident.serial_number),
        "display": data.MODEL["display"].value,
        "display_mode": display_mode,
        "keyboard": data.KEYBOARD,
        "pointer": config.pointer_option.name,
        "boot_rom_version": data.MODEL["boot_rom_version"].value,
        "board_id": data.MODEL["board_id"].value,
        "security_chip": data.MODEL["security_chip"].value,
        **ident.to_dict(),
        "manufactured": ident.manufactured.isoformat(),
        "as_of": config.as_of.isoformat() if config.as_of else None,
        "sold": window.describe() if window else None,
    }


def _display_mode(name: str) -> str:
    from imacpro.devices.display.framebuffer import MODES
    mode = MODES[name]
    handed = "as Apple's firmware gives any OS but macOS" if name == "compat" else \
        "the panel's own, as Apple's firmware gives macOS"
    return f"{name}: {mode.width} × {mode.height}, {mode.drm_format} ({handed})"


def render_overview(o: dict) -> str:
    memory = (f"{o['memory_gb']} GB {o['memory_type']}{' ECC' if o['memory_ecc'] else ''}, "
              f"{o['memory_speed_mts']} MHz ({o['memory_modules']}")
    memory += ", third-party modules)" if o["memory_supplier"] != "Apple" else ")"
    rows = [
        ("Model Name", o["model_name"]),
        ("Model Identifier", o["model_identifier"]),
        ("Processor Name", f"{o['processor_name']} ({o['processor_model']})"),
        ("Processor Speed", f"{o['processor_speed_ghz']} GHz "
                            f"(Turbo Boost up to {o['turbo_boost_ghz']} GHz)"),
        ("Number of Processors", o["processors"]),
        ("Total Number of Cores", o["cores"]),
        ("Hyper-Threading Technology", f"Enabled ({o['threads']} threads)"),
        ("L2 Cache (per Core)", _mb(o["l2_cache_per_core_kib"])),
        ("L3 Cache", _mb(o["l3_cache_kib"])),
        ("Memory", memory),
        ("Graphics", f"{o['graphics']}, {o['graphics_memory_gb']} GB "
                     f"{o['graphics_memory_type']}"),
        ("Storage", f"{o['storage_tb']} TB SSD, {o['storage_model']} (NVMe, serial "
                    f"{o['storage_serial']})"),
        ("Display", o["display"]),
        ("Display Mode", _display_mode(o["display_mode"])),
        ("Input", f"{o['keyboard']}; {o['pointer']} (USB)"),
        ("Boot ROM Version", o["boot_rom_version"]),
        ("Board ID", o["board_id"]),
        ("Serial Number (system)", o["serial_number"]),
        ("Hardware UUID", o["hardware_uuid"]),
        ("Security Chip", f"{o['security_chip']}, ECID {o['t2_ecid']}"),
        ("Ethernet MAC Address", o["ethernet_mac"]),
        ("Wi-Fi MAC Address", o["wifi_mac"]),
        ("Bluetooth MAC Address", o["bluetooth_mac"]),
        ("Manufactured", o["manufactured"]),
    ]
    if o["as_of"]:
        rows.append(("Configured As Of", o["as_of"]))
    if o["sold"]:
        rows.append(("Sold By Apple", o["sold"]))
    width = max(len(label) for label, _ in rows) + 2
    lines = [f"{o['name']}: Hardware Overview", ""]
    lines += [f"  {label + ':':<{width}}{value}" for label, value in rows]
    return "\n".join(lines)


def _window(w: data.Window) -> dict:
    return {"offered_from": w.offered_from.isoformat(),
            "offered_until": w.offered_until.isoformat() if w.offered_until else None}


def catalog_report() -> dict:
    return {
        "model": {k: {"value": f.value, "sources": list(f.sources)} for k, f in data.MODEL.items()},
        "processors": [
            {"cpu": p.key, "name": f"Intel Xeon {p.name}", "brand_string": p.brand_string,
             "cores": p.cores, "threads": p.threads, "base_ghz": p.base_ghz,
             "turbo_ghz": p.turbo_ghz, "l2_per_core_kib": p.l2_per_core_kib,
             "l3_kib": p.l3_kib, "family": p.family, "model": p.model, "stepping": p.stepping,
             "socket": p.socket, **_window(p.window), "sources": list(p.sources)}
            for p in data.PROCESSORS.values()],
        "memory": [
            {"memory": m.key, "modules": f"{data.MEMORY_SLOTS} × {m.dimm_gb} GB",
             "type": f"{data.MEMORY_TYPE}-{data.MEMORY_SPEED_MTS} ECC", "apple": m.apple,
             **_window(m.window), "sources": list(m.sources)}
            for m in data.MEMORY.values()],
        "graphics": [
            {"graphics": g.key, "name": g.name, "memory_gb": g.vram_gb, "memory_type": g.vram_type,
             **_window(g.window), "sources": list(g.sources)}
            for g in data.GRAPHICS.values()],
        "pointers": [
            {"pointer": p.key, "name": p.name, **_window(p.window), "sources": list(p.sources)}
            for p in data.POINTERS.values()],
        "storage": [
            {"storage": s.key, "capacity_bytes": s.capacity_bytes, **_window(s.window),
             "sources": list(s.sources)}
            for s in data.STORAGE.values()],
        "base_configurations": [
            {"cpu": b.cpu, "memory": b.memory, "graphics": b.graphics, "storage": b.storage,
             **_window(b.window)}
            for b in data.BASE_CONFIGURATIONS],
        "sources": data.SOURCES,
    }


def render_catalog() -> str:
    m = data.MODEL
    lines = [
        f"{m['model_name'].value} ({m['model_identifier'].value}, {m['model_number'].value}, "
        f"board {m['board_id'].value})",
        f"  introduced {m['introduced'].value}, released {m['released'].value}, no longer "
        f"configurable {m['discontinued'].value}, delisted {m['delisted'].value}",
        f"  from {m['base_price'].value} ({m['order_number'].value}); final OS "
        f"{m['final_macos'].value}",
        "",
        "Processors (--cpu):",
    ]
    for p in data.PROCESSORS.values():
        lines.append(f"  {p.key:<4} Intel Xeon {p.name}  {p.cores} cores/{p.threads} threads  "
                     f"{p.base_ghz} GHz, turbo {p.turbo_ghz} GHz  L2 {p.cores} × "
                     f"{_mb(p.l2_per_core_kib)}, L3 {_mb(p.l3_kib)}  {p.window.describe()}")
    lines += ["", f"Memory (--memory), {data.MEMORY_SLOTS} slots, {data.MEMORY_TYPE}-"
                  f"{data.MEMORY_SPEED_MTS} ECC:"]
    for mem in data.MEMORY.values():
        when = mem.window.describe() if mem.apple else "third-party modules only " \
                                                       "(--third-party-memory)"
        lines.append(f"  {mem.key:<4} {data.MEMORY_SLOTS} × {mem.dimm_gb} GB  {when}")
    lines += ["", "Graphics (--graphics):"]
    for g in data.GRAPHICS.values():
        lines.append(f"  {g.key:<8} {g.name}, {g.vram_gb} GB {g.vram_type}  {g.window.describe()}")
    lines += ["", "Storage (--storage):"]
    for s in data.STORAGE.values():
        lines.append(f"  {s.key:<4} {s.capacity_tb} TB SSD  {s.window.describe()}")
    lines += ["", f"Keyboard: {data.KEYBOARD}. Pointing device (--pointer):"]
    for option in data.POINTERS.values():
        lines.append(f"  {option.key:<8} {option.name}  {option.window.describe()}")
    lines += ["", "Stock configurations:"]
    for b in data.BASE_CONFIGURATIONS:
        lines.append(f"  {b.cpu}-core, {b.memory} GB, {data.GRAPHICS[b.graphics].name}, "
                     f"{b.storage}  {b.window.describe()}")
    lines += ["", "Built in:"]
    for key in ("display", "ethernet", "wifi", "bluetooth", "usb", "thunderbolt",
                "card_reader", "camera", "security_chip", "weight"):
        lines.append(f"  {m[key].value}")
    lines += ["", "Sources: 'imacpro catalog --json' gives the source of every fact."]
    return "\n".join(lines)


def list_row(name: str, config: Configuration) -> dict:
    p = config.processor
    return {"name": name, "cpu": p.cores, "processor": f"Xeon {p.name}", "threads": p.threads,
            "memory_gb": config.memory, "graphics": config.graphics_option.name,
            "storage": config.storage}

