"""The machine's heat: the Xeon's package power from its vCPUs' work, its temperature, the two
fans the SMC runs, as the SMC's sensors report them (devices/smc.py).

    power        P = P_IDLE + (TDP - P_IDLE) * u, u = the package's load in [0, 1]: the
                 vCPUs' C0 time weighted by their clock (APERF, cpu/hwp.py) per second, over
                 the core count at the SKU's turbo clock (the two threads of a core share
                 its power; 16 busy threads on the 8-core die are full load)
    CPU (TC0P)   first order towards T_AMBIENT + P * R(fan), time constant TAU_S; R falls
                 from R_QUIET at the fans' minimum to R_FULL at their maximum
    fans (F0Ac)  the SMC's curve: the minimum (F0Mn) up to FAN_CURVE_FROM_C, rising linearly
                 to the maximum (F0Mx) at FAN_CURVE_TO_C; the blower turns towards its target
                 at FAN_SLEW_RPM_S; in manual mode (F0Md = 1) the target is F0Tg's
    GPU (TG0P)   the Vega at idle (nothing drives it: the GPU is not modelled), cooled by the
                 same fans; memory (TM0P) a little above the air, warmed by the package

Apple does not publish the iMac Pro's thermal design; the constants are ours, chosen so that
the machine idles near 40 °C with its fans at their minimum and settles near 85-90 °C with
them near their maximum under full load (what owners report of the real one), with a time
constant short enough that a minute's work shows. The TDPs are Intel's (catalog/data.py).

Time is the machine's guest time; the model advances when it is read (the SMC, `imacpro
sensors`), over the time since, in steps of at most STEP_S, with the load averaged over it.
A power-on starts at the idle steady state; a reboot (reset) keeps the heat and the fans'
speeds and forgets what the owner set. Saved state: the CPU's temperature, the fans' speeds
and what the owner set (minimums, manual mode, targets).
"""

from __future__ import annotations

import math
from typing import Callable

from imacpro.devices import _state
from imacpro.devices.contract import StateError

T_AMBIENT_C = 24.0
P_IDLE_W = 12.0
R_QUIET_K_PER_W = 1.3        # package-to-air at the fans' minimum
R_FULL_K_PER_W = 0.45        # ... and at their maximum
TAU_S = 20.0
FAN_CURVE_FROM_C, FAN_CURVE_TO_C = 55.0, 90.0
FAN_SLEW_RPM_S = 300.0
FAN_MIN_RPM, FAN_MAX_RPM = 1100.0, 2500.0     # the real SMC's F0Mn and F0Mx
FANS = 2
GPU_IDLE_W = 20.0
STEP_S = 0.5
NS = 1_000_000_000


class ThermalModel:
    """`work_s()`: the package's work so far, in seconds of one core at the base clock (the
    sum of its logical CPUs' APERF over the TSC's rate); `now_ns()`: guest time."""

    def __init__(self, tdp_w: float, cores: int, turbo_over_base: float,
                 work_s: Callable[[], float], now_ns: Callable[[], int]):
        self.tdp_w = tdp_w
        self.cores = cores
        self.turbo_over_base = turbo_over_base
        self._work_s = work_s
        self._now_ns = now_ns
        # Power-on: the package at the air's idle steady state, the fans at their minimum.
        self.cpu_c = self._steady(P_IDLE_W, FAN_MIN_RPM)
        self.fan_rpm = [FAN_MIN_RPM] * FANS
        self.power_w = P_IDLE_W
        self._since_ns = self._now_ns()
        self._work_at = self._work_s()
        self._owner_defaults()

    def reset(self) -> None:
        """A platform reset (a reboot): what the owner set through the SMC goes back to the
        defaults, but the package stays as warm as its work made it and the fans go on from
        their speed, as on the real machine. The machine resets its devices before its CPUs,
        so the model takes in their work up to now first (their counters restart at zero)."""
        self.update()
        self._owner_defaults()

    def _owner_defaults(self) -> None:
        self.fan_min = [FAN_MIN_RPM] * FANS
        self.fan_manual = [False] * FANS
        self.fan_target_manual = [FAN_MIN_RPM] * FANS

    # --- the physics --------------------------------------------------------------------------

    @staticmethod
    def _resistance(fan_rpm: float) -> float:
        share = (fan_rpm - FAN_MIN_RPM) / (FAN_MAX_RPM - FAN_MIN_RPM)
        share = min(1.0, max(0.0, share))
        return R_QUIET_K_PER_W - (R_QUIET_K_PER_W - R_FULL_K_PER_W) * share

    def _steady(self, power_w: float, fan_rpm: float) -> float:
        return T_AMBIENT_C + power_w * self._resistance(fan_rpm)

    def fan_target(self, fan: int) -> float:
        """What the SMC asks of fan `fan`: its curve, or the owner's target in manual mode."""
        low = self.fan_min[fan]
        if self.fan_manual[fan]:
            return min(FAN_MAX_RPM, max(low, self.fan_target_manual[fan]))
        share = (self.cpu_c - FAN_CURVE_FROM_C) / (FAN_CURVE_TO_C - FAN_CURVE_FROM_C)
        return low + (FAN_MAX_RPM - low) * min(1.0, max(0.0, share))

    def update(self) -> None:
        """Advance to now: the load over the time since the last update drives each step."""
        now = self._now_ns()
        elapsed = (now - self._since_ns) / NS
        if elapsed <= 0:
            return
        work = self._work_s()       # lower than last time after a reset: none counted
        busy_cores = max(0.0, work - self._work_at) / elapsed / self.turbo_over_base
        load = min(1.0, busy_cores / self.cores)
        self.power_w = P_IDLE_W + (self.tdp_w - P_IDLE_W) * load
        self._since_ns, self._work_at = now, work
        steps = max(1, math.ceil(elapsed / STEP_S))
        dt = elapsed / steps
        for _ in range(steps):
            target_c = self._steady(self.power_w, sum(self.fan_rpm) / FANS)
            self.cpu_c = target_c + (self.cpu_c - target_c) * math.exp(-dt / TAU_S)
            for fan in range(FANS):
                wanted = self.fan_target(fan)
                move = max(-FAN_SLEW_RPM_S * dt, min(FAN_SLEW_RPM_S * dt,
                                                     wanted - self.fan_rpm[fan]))
                self.fan_rpm[fan] += move

    # --- what the sensors read ----------------------------------------------------------------

    def gpu_c(self) -> float:
        return self._steady(GPU_IDLE_W, sum(self.fan_rpm) / FANS)

    def memory_c(self) -> float:
        return T_AMBIENT_C + 8.0 + 0.05 * self.power_w

    def readings(self) -> dict:
        self.update()
        return {"cpu_c": round(self.cpu_c, 2), "gpu_c": round(self.gpu_c(), 2),
                "memory_c": round(self.memory_c(), 2), "package_w": round(self.power_w, 1),
                "fans": [{"rpm": round(rpm), "target": round(self.fan_target(n)),
                          "min": round(self.fan_min[n]), "max": round(FAN_MAX_RPM),
                          "manual": self.fan_manual[n]}
                         for n, rpm in enumerate(self.fan_rpm)]}

    # --- saved state --------------------------------------------------------------------------
    # Plain data holds no floats: temperatures in millidegrees, speeds in whole rpm.

    def save(self) -> dict:
        return {"cpu_mc": round(self.cpu_c * 1000), "fan_rpm": [round(r) for r in self.fan_rpm],
                "fan_min": [round(r) for r in self.fan_min], "fan_manual": list(self.fan_manual),
                "fan_target_manual": [round(r) for r in self.fan_target_manual]}

    def load(self, state: dict) -> None:
        where = "ThermalModel"
        state = _state.mapping(state, where)
        cpu_mc = _state.int_field(state, "cpu_mc", where, -50_000, 150_000)
        rpm = int(FAN_MAX_RPM)
        lists = {name: _state.int_list(state, name, where, 0, rpm, length=FANS)
                 for name in ("fan_rpm", "fan_min", "fan_target_manual")}
        manual = _state.list_field(state, "fan_manual", where, length=FANS)
        if not all(isinstance(m, bool) for m in manual):
            raise StateError(f"{where}.fan_manual: not true or false")
        self.cpu_c = cpu_mc / 1000
        self.fan_rpm = [float(r) for r in lists["fan_rpm"]]
        self.fan_min = [float(r) for r in lists["fan_min"]]
        self.fan_target_manual = [float(r) for r in lists["fan_target_manual"]]
        self.fan_manual = list(manual)
        self._since_ns = self._now_ns()
        self._work_at = self._work_s()
