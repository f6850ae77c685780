"""EV charging points: sessions with realistic arrivals, plug-in durations and energies, and OCPP statuses.

Sessions arrive as a non-homogeneous Poisson process (thinning) with a daily rate and an hourly arrival
shape by site: homes see evening arrivals and overnight stays, workplaces morning arrivals and working-day
stays. Per session (distributions in the range of published charging-session data sets, e.g. ElaadNL,
Dundee, Boulder): energy requested is log-normal (median ~10 kWh at home, ~8 kWh at work, capped at 80 kWh),
the plug-in duration is log-normal (median 11 h at home, 8 h at work), and the vehicle's on-board charger is
3.7, 7.4, 11 or 22 kW (capped by the charging point). An arrival while the connector is occupied is turned
away (counted).

OCPP 1.6 connector status over a session:
    Available -> Preparing (authorisation, 1-3 min) -> Charging (constant power until the energy is
    delivered) -> SuspendedEV (car full, still plugged in) -> Finishing (unplugging, 30-90 s) -> Available
If the car leaves before it is full, Charging goes straight to Finishing. The session_energy register counts
from 0 within a session and keeps its final value until the session ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from simulators.models.base import J_PER_KWH, Chunk, FloatArray, GroupOutput, IntArray
from simulators.models.profiles import ev_arrival_peak, ev_arrival_shape

VEHICLE_KW = (3.7, 7.4, 11.0, 22.0)
VEHICLE_P = (0.08, 0.25, 0.6, 0.07)


@dataclass(frozen=True, slots=True)
class EvSite:
    """Session statistics of a charging point's site type."""

    name: str
    sessions_per_weekday: float
    sessions_per_weekend_day: float
    energy_median_kwh: float
    energy_sigma: float
    dwell_median_h: float
    dwell_sigma: float


SITES = {
    "residential": EvSite("residential", 0.9, 0.9, 10.0, 0.6, 11.0, 0.45),
    "workplace": EvSite("workplace", 1.1, 0.15, 8.0, 0.55, 8.0, 0.35),
}


@dataclass(frozen=True, slots=True)
class Session:
    """One charging session (times in epoch ms). `energy_kwh` is what was delivered."""

    session_id: str
    arrival_ms: int
    charge_start_ms: int
    charge_end_ms: int
    departure_ms: int
    free_ms: int  # end of Finishing
    power_w: float
    energy_kwh: float
    requested_kwh: float

    def as_dict(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "arrival_ms": self.arrival_ms,
            "charge_start_ms": self.charge_start_ms,
            "charge_end_ms": self.charge_end_ms,
            "departure_ms": self.departure_ms,
            "power_w": self.power_w,
            "energy_kwh": self.energy_kwh,
            "requested_kwh": self.requested_kwh,
        }


@dataclass(slots=True)
class _Charger:
    device: str
    building: str
    site: EvSite
    max_w: float
    rng: np.random.Generator
    next_candidate_ms: int
    free_ms: int = 0
    count: int = 0
    turned_away: int = 0
    sessions: list[Session] = field(default_factory=list)


def energy_in_windows(sessions: list[Session], t_ms: IntArray, dt_s: int) -> FloatArray:
    """Energy (kWh) the sessions deliver in each window [t, t + dt): exact, from the continuous model."""
    out = np.zeros(t_ms.size)
    start = t_ms.astype(np.float64)
    end = start + dt_s * 1000.0
    for s in sessions:
        overlap = np.clip(np.minimum(end, s.charge_end_ms) - np.maximum(start, s.charge_start_ms), 0.0, None)
        out += s.power_w * overlap / 1000.0 / J_PER_KWH
    return out


class EvModel:
    def __init__(
        self,
        chargers: list[tuple[str, str, str, float | None]],
        *,
        tz: ZoneInfo,
        start_ms: int,
        rngs: list[np.random.Generator],
    ) -> None:
        """chargers: (device, building, site name, max power W or None)."""
        self.tz = tz
        self.chargers: list[_Charger] = []
        for (device, building, site, max_w), rng in zip(chargers, rngs, strict=True):
            c = _Charger(device, building, SITES[site], max_w or 22_000.0, rng, start_ms)
            c.next_candidate_ms = start_ms + self._gap_ms(c)
            self.chargers.append(c)
        #: Sessions created since the caller last emptied this list (the truth records them).
        self.new_sessions: list[tuple[str, Session]] = []

    def _gap_ms(self, c: _Charger) -> int:
        peak_rate_per_ms = max(c.site.sessions_per_weekday, c.site.sessions_per_weekend_day) * ev_arrival_peak(
            c.site.name
        )
        return max(1000, int(c.rng.exponential(86_400_000 / peak_rate_per_ms)))

    def _accept(self, c: _Charger, t_ms: int) -> bool:
        local = datetime.fromtimestamp(t_ms / 1000, UTC).astimezone(self.tz)
        rate = c.site.sessions_per_weekday if local.weekday() < 5 else c.site.sessions_per_weekend_day
        peak = max(c.site.sessions_per_weekday, c.site.sessions_per_weekend_day) * ev_arrival_peak(c.site.name)
        hour = local.hour + local.minute / 60 + local.second / 3600
        return bool(c.rng.random() < rate * ev_arrival_shape(c.site.name, hour) / peak)

    def _new_session(self, c: _Charger, arrival: int) -> Session:
        rng, site = c.rng, c.site
        requested = float(min(80.0, rng.lognormal(math.log(site.energy_median_kwh), site.energy_sigma)))
        dwell_ms = int(max(0.33, rng.lognormal(math.log(site.dwell_median_h), site.dwell_sigma)) * 3_600_000)
        vehicle_kw = float(rng.choice(VEHICLE_KW, p=VEHICLE_P))
        power = min(vehicle_kw * 1000.0, c.max_w)
        prep = int(rng.integers(60, 181)) * 1000
        finish = int(rng.integers(30, 91)) * 1000
        charge_start = arrival + prep
        departure = arrival + max(dwell_ms, prep + 60_000)
        charge_end = min(departure, charge_start + math.ceil(requested * J_PER_KWH / power * 1000))
        energy = power * (charge_end - charge_start) / 1000.0 / J_PER_KWH
        c.count += 1
        return Session(
            f"{c.device}-{c.count:05d}",
            arrival,
            charge_start,
            charge_end,
            departure,
            departure + finish,
            power,
            energy,
            requested,
        )

    def _generate_until(self, c: _Charger, end_ms: int) -> None:
        while c.next_candidate_ms < end_ms:
            t = c.next_candidate_ms
            c.next_candidate_ms = t + self._gap_ms(c)
            if not self._accept(c, t):
                continue
            if t < c.free_ms:
                c.turned_away += 1
                continue
            session = self._new_session(c, t)
            c.sessions.append(session)
            self.new_sessions.append((c.device, session))
            c.free_ms = session.free_ms

    def sessions_overlapping(self, row: int, start_ms: int, end_ms: int) -> list[Session]:
        c = self.chargers[row]
        self._generate_until(c, end_ms)
        return [s for s in c.sessions if s.arrival_ms < end_ms and s.free_ms > start_ms]

    def energy_kwh(self, rows: list[int], t_ms: IntArray, dt_s: int) -> FloatArray:
        """Energy per window of the given chargers together (for the building meter they hang behind)."""
        total = np.zeros(t_ms.size)
        end = int(t_ms[-1]) + dt_s * 1000
        for row in rows:
            total += energy_in_windows(self.sessions_overlapping(row, int(t_ms[0]), end), t_ms, dt_s)
        return total

    def sample(self, chunk: Chunk) -> GroupOutput:
        n, t = chunk.n, chunk.t_ms
        end = int(t[-1]) + chunk.dt_s * 1000
        power = np.zeros((len(self.chargers), n))
        register = np.zeros((len(self.chargers), n))
        energy = np.zeros((len(self.chargers), n))
        status: list[list[str]] = []
        session_ids: list[list[str]] = []
        for row in range(len(self.chargers)):
            st = ["Available"] * n
            ids = [""] * n
            for s in self.sessions_overlapping(row, int(t[0]), end):
                lo, hi = np.searchsorted(t, [s.arrival_ms, s.free_ms])
                cs, ce, dep = np.searchsorted(t, [s.charge_start_ms, s.charge_end_ms, s.departure_ms])
                for k in range(lo, hi):
                    ids[k] = s.session_id
                    if k < cs:
                        st[k] = "Preparing"
                    elif k < ce:
                        st[k] = "Charging"
                    elif k < dep:
                        st[k] = "SuspendedEV"
                    else:
                        st[k] = "Finishing"
                span = slice(lo, hi)
                delivered = np.clip(t[span] - s.charge_start_ms, 0, s.charge_end_ms - s.charge_start_ms)
                register[row, span] = s.power_w * delivered / 1000.0 / J_PER_KWH
                power[row, cs:ce] = s.power_w
                energy[row] += energy_in_windows([s], t, chunk.dt_s)
            status.append(st)
            session_ids.append(ids)
        return GroupOutput(
            {"session_energy": register, "power": power},
            strings={"connector_status": status, "session_id": session_ids},
            energy={"session_energy": energy},
        )

    def advance(self, end_ms: int) -> None:
        """Forget sessions that ended before `end_ms` (call after every group has sampled the chunk)."""
        for c in self.chargers:
            c.sessions = [s for s in c.sessions if s.free_ms > end_ms]

    @property
    def turned_away(self) -> dict[str, int]:
        return {c.device: c.turned_away for c in self.chargers}
