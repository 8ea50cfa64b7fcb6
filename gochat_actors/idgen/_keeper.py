"""The machine-ID keeper: the child that leases a machine ID in etcd and keeps it.

One incarnation: grant a lease; claim a free ID (a txn: ``create_revision == 0`` -> put
with the lease, reading the ID's last-timestamp record in the same txn); wait until the
clock passes that record; then renew every ``lease_ttl / 3`` (keepalive, then a guarded
write of the last timestamp). Each renewal lets the generator issue until
``keepalive sent + min(lease_ttl, TTL) - margin``. After a loss it claims again
(perhaps another ID); when stopped it writes a final record and revokes the lease.
docs/idgen.md gives the safety argument.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from supervisors import Backoff, Health, cleanup_scope, progress, set_health

from .._exceptions import IdGenError, IdGenUnavailable, MachineIdLost, MachineIdsExhausted
from .._tracing import idgen_event, idgen_span
from ..log import get_logger
from ._backends import BACKENDS, EtcdOptions
from ._cluster import ClusterEtcd
from ._lease import LeaseHolder
from ._protocol import Compare, Delete, EtcdBackend, Get, Put, TxnResult, prefix_end

__all__ = ["run_keeper"]

T = TypeVar("T")

_log = get_logger("gochat_actors.idgen")


@dataclass(slots=True)
class _Claim:
    machine_id: int
    revision: int  # the create revision of our claim key: proves it is still ours
    floor_ms: int  # the first millisecond we may issue under it
    record_mod: int = 0  # the mod revision of last/<m> as we last saw it (0: absent)
    installed: bool = False


@dataclass(frozen=True, slots=True)
class _Record:
    owner: str
    last_ms: int
    ttl_ms: int
    final: bool


def _encode(owner: str, last_ms: int | None = None, ttl_ms: int = 0, final: bool = False) -> bytes:
    record: dict[str, Any] = {"owner": owner}
    if last_ms is not None:
        record.update(last_ms=last_ms, ttl_ms=ttl_ms, final=final)
    return json.dumps(record, separators=(",", ":")).encode()


def _decode(raw: bytes) -> _Record | None:
    """The record in ``raw`` as :func:`_encode` writes it, else None (a bad record: its
    machine ID is left alone). Strict: every generator scans every record, so one that
    made this raise (JSON nested too deep, ``1e999``) would stop them all, and one read
    loosely (``"final": "false"`` as true) would let the next owner start too early."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    owner, last_ms, ttl_ms = record.get("owner"), record.get("last_ms"), record.get("ttl_ms")
    final = record.get("final", False)
    if not (
        isinstance(owner, str)
        and type(last_ms) is int
        and type(ttl_ms) is int
        and ttl_ms >= 0  # last_ms may be -1: an owner that stopped before its first ID
        and isinstance(final, bool)
    ):
        return None
    return _Record(owner, last_ms, ttl_ms, final)


def _open_backend(gen: LeaseHolder) -> tuple[EtcdBackend, bool]:
    """The backend for one incarnation, and whether this incarnation owns (closes) it."""
    if gen.backend is not None:
        return gen.backend, False
    url = gen.settings.etcd
    options = EtcdOptions.from_settings(gen.settings)
    return BACKENDS.factory(url.scheme)(url, gen.request_timeout, options), True


async def run_keeper(gen: LeaseHolder, *, started: Callable[[], None]) -> None:
    """What :meth:`IdGenerator.run` does: hold a machine ID until cancelled; call
    ``started()`` once IDs can be issued (or while waiting for a free machine ID)."""
    if gen.running:
        raise RuntimeError("this IdGenerator's child is already running (one spec() per tree)")
    gen.running = True
    try:
        if gen.static:
            _log.info("idgen.static", machine_id=gen.settings.machine_id)
            set_health(Health.OK)
            started()
            await trio.sleep_forever()
        backend, owned = _open_backend(gen)
        keeper = _Keeper(gen, backend)
        announced = False

        def announce() -> None:  # started while waiting for a free machine ID
            nonlocal announced
            announced = True
            started()

        try:
            await keeper.acquire(first=True, announce=announce)
            if not announced:
                started()
            await keeper.keep()
        finally:
            gen.invalidate("the idgen child stopped")
            with cleanup_scope():
                await keeper.release()
                if owned:
                    await backend.aclose()
    finally:
        gen.running = False


class _Keeper:
    """One incarnation's lease, claim and renewal loop (private)."""

    def __init__(self, gen: LeaseHolder, backend: EtcdBackend) -> None:
        settings = gen.settings
        self.gen = gen
        self.backend = backend
        self.prefix = settings.key_prefix.encode()
        self.ttl = settings.lease_ttl
        self.margin = settings.margin
        self.ttl_ms = math.ceil(settings.lease_ttl * 1000)
        self.interval_ns = round(settings.lease_ttl / 3 * 1e9)
        self.max_wait_ms = 2 * self.ttl_ms  # a longer wait: try another free ID first
        self.timeout = gen.request_timeout
        if isinstance(backend, ClusterEtcd):  # a request may try every member in turn
            self.timeout = max(self.timeout, backend.request_bound)
        # Retry a failed renewal at least every margin/2 (and TTL/3): the lease may
        # outlive our deadline by `margin`, the window in which it can still be saved.
        retry_max = min(self.ttl / 3, max(self.margin / 2, 0.05))
        self.backoff = Backoff(
            initial=min(0.1, retry_max), maximum=retry_max, multiplier=2.0, jitter=0.2
        )
        # Every ID held: look again soon (a cleanly stopped holder frees its ID at
        # once), then every ttl/3 at most (a crashed one's frees within lease_ttl).
        wait_max = max(self.ttl / 3, 0.1)
        self.wait_backoff = Backoff(
            initial=min(0.5, wait_max), maximum=wait_max, multiplier=2.0, jitter=0.2
        )
        self.rng = gen.rng  # the generator's: seeded, a run replays its machine IDs
        self.lease: int | None = None
        self.claim: _Claim | None = None
        self.sent_ns = 0  # when the last acknowledged keepalive was sent
        self.log = _log.bind(owner=gen.owner, key_prefix=settings.key_prefix)

    # -- plumbing --------------------------------------------------------------------
    async def _call(
        self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> T:
        try:
            with trio.fail_after(self.timeout):
                return await fn(*args, **kwargs)
        except trio.TooSlowError as exc:
            raise IdGenUnavailable(f"etcd {what}: no reply within {self.timeout:g}s") from exc

    def _key(self, machine_id: int) -> bytes:
        return self.prefix + str(machine_id).encode()

    def _last_key(self, machine_id: int) -> bytes:
        return self.prefix + b"last/" + str(machine_id).encode()

    def _failed(self, what: str, exc: Exception) -> None:
        self.gen.count_renewal_failure()
        holding = self.gen.ready
        self.log.warning(f"idgen.{what}_failed", error=str(exc), still_issuing=holding)
        set_health(Health.DEGRADED if holding else Health.FAILED, f"{what} failed: {exc}")

    # -- acquiring -------------------------------------------------------------------
    async def acquire(self, *, first: bool, announce: Callable[[], None] | None = None) -> None:
        """Lease and claim a machine ID and make it issuable. Failures are retried
        unless ``first`` (then the start fails). Every machine ID held is not a failure:
        the keeper waits with backoff until one frees, saying so (health, readiness,
        ``next_id``'s error, a log line), and a first start is announced (``announce``)
        meanwhile so that the rest of the tree starts."""
        attempt = exhausted = 0
        waiting_since = self.gen.mono()
        while True:
            try:
                with idgen_span("acquire"):
                    await self._acquire_once()
            except MachineIdsExhausted as exc:
                delay = self.wait_backoff.delay(exhausted, self.rng.random())
                self._wait_for_a_free_id(exc, exhausted, delay)
                exhausted += 1
                if first and announce is not None:
                    announce()
                    first = False
                await trio.sleep(delay)
                progress()
            except (IdGenUnavailable, MachineIdLost) as exc:
                if first:
                    raise
                self._failed("acquire", exc)
                await trio.sleep(self.backoff.delay(attempt, self.rng.random()))
                attempt += 1
                progress()
            else:
                if exhausted:
                    waited_ms = (self.gen.mono() - waiting_since) // 1_000_000
                    self.log.info(
                        "idgen.id_freed", machine_id=self.gen.machine_id, waited_ms=waited_ms
                    )
                return

    def _wait_for_a_free_id(self, exc: MachineIdsExhausted, tries: int, delay: float) -> None:
        reason = f"{exc}: waiting for one to free (next try in {delay:.1f}s)"
        self.gen.invalidate(reason)
        set_health(Health.FAILED, reason)
        if tries == 0:  # once per wait; each try is one range read, at most every ttl/3
            self.log.warning(
                "idgen.exhausted", machine_ids=self.gen.layout.max_machine_id + 1, waiting=True
            )

    async def _acquire_once(self) -> None:
        gen = self.gen
        started = gen.mono()
        # Scan before granting: the lease then lives only through the claims it needs.
        order = await self._scan()
        lease, _ = await self._call("lease grant", self.backend.lease_grant, math.ceil(self.ttl))
        self.lease = lease
        try:
            self.claim = await self._claim(lease, order)
            await self._wait_for_floor(self.claim, lease)
            await self.renew()
        except BaseException:
            self.claim = None
            with cleanup_scope():
                await self._revoke()
            raise
        gen.count_acquisition()
        self.log.info(
            "idgen.acquired",
            machine_id=self.claim.machine_id,
            lease=self.lease,
            took_ms=(gen.mono() - started) // 1_000_000,
        )

    async def _scan(self) -> tuple[list[int], list[tuple[int, int]]]:
        """The free machine IDs, from one range read of the claims and the records:
        those usable soon, from a random one on (spreading concurrent starters), and
        the others as ``(floor_ms, machine_id)``."""
        prefix, count = self.prefix, self.gen.layout.max_machine_id + 1
        kvs = await self._call("range", self.backend.range, prefix, prefix_end(prefix))
        taken: set[int] = set()
        floors: dict[int, int] = {}
        for kv in kvs:
            suffix = kv.key[len(prefix) :]
            if suffix.isdigit():
                taken.add(int(suffix))
            elif suffix.startswith(b"last/") and suffix[5:].isdigit():
                previous = _decode(kv.value)
                if previous is not None:  # a bad record is reported when claimed
                    floors[int(suffix[5:])] = self._floor(previous)
        now_ms = self.gen.now_ms()
        start = self.rng.randrange(count)
        near: list[int] = []
        far: list[tuple[int, int]] = []
        for offset in range(count):
            machine_id = (start + offset) % count
            if machine_id in taken:
                continue
            floor = floors.get(machine_id, self._floor(None))
            if floor - now_ms <= self.max_wait_ms:
                near.append(machine_id)
            else:
                far.append((floor, machine_id))
        if not near and not far:
            raise self._exhausted()
        return near, far

    def _exhausted(self) -> MachineIdsExhausted:
        count = self.gen.layout.max_machine_id + 1
        return MachineIdsExhausted(
            f"all {count} machine IDs under {self.gen.settings.key_prefix!r} are held"
        )

    async def _claim(self, lease: int, found: tuple[list[int], list[tuple[int, int]]]) -> _Claim:
        """Claim a free machine ID: one usable soon if any (the scan may be stale: one
        whose record moved far ahead is given back for now), else the one usable
        soonest. Keeps the lease alive if the claims take long."""
        near, far = found[0], list(found[1])
        alive_ns = self.gen.mono()
        for machine_id in near:
            alive_ns = await self._keep_alive_while_claiming(lease, alive_ns)
            claim = await self._try_claim(machine_id, lease)
            if claim is None:
                continue
            if claim.floor_ms - self.gen.now_ms() <= self.max_wait_ms:
                return claim
            far.append((claim.floor_ms, machine_id))
            await self._drop(claim)
        for _, machine_id in sorted(far):
            alive_ns = await self._keep_alive_while_claiming(lease, alive_ns)
            claim = await self._try_claim(machine_id, lease)
            if claim is not None:
                return claim
        raise self._exhausted()

    async def _keep_alive_while_claiming(self, lease: int, alive_ns: int) -> int:
        """Refresh ``lease`` once a renewal interval has passed since ``alive_ns``."""
        if self.gen.mono() - alive_ns < self.interval_ns:
            return alive_ns
        sent = self.gen.mono()
        if await self._keepalive(lease) is None:
            raise MachineIdLost(f"lease {lease} expired while claiming a machine ID")
        return sent

    async def _try_claim(self, machine_id: int, lease: int) -> _Claim | None:
        key, mine = self._key(machine_id), _encode(self.gen.owner)
        last = Get(self._last_key(machine_id))
        result = await self._call(
            "txn",
            self.backend.txn,
            [Compare(key, "create", 0)],
            [Put(key, mine, lease), last],
            [Get(key), last],
        )
        claim = _Claim(machine_id, result.revision, 0)
        if not result.succeeded:
            # Held: by someone else, or by this very claim sent before to a member that
            # applied it and then failed to answer (the cluster client resent it).
            held = result.responses[0]
            if not (isinstance(held, list) and held and held[0].lease == lease):
                return None
            if held[0].value != mine:
                return None
            claim.revision = held[0].create_revision
        found = result.responses[1]
        previous = _decode(found[0].value) if isinstance(found, list) and found else None
        if isinstance(found, list) and found:
            claim.record_mod = found[0].mod_revision
        if isinstance(found, list) and found and previous is None:
            self.log.warning("idgen.bad_record", machine_id=machine_id, value=found[0].value[:80])
            await self._drop(claim)
            return None
        claim.floor_ms = self._floor(previous)
        return claim

    def _floor(self, previous: _Record | None) -> int:
        """The first millisecond we may issue under an ID whose last record is ``previous``."""
        used = self.gen.last_ms  # every millisecond this generator used, under any ID
        if previous is None or previous.owner == self.gen.owner:
            return used + 1  # never used, or last used by us: our own high-water mark
        if previous.final:  # its owner stopped for good after writing it
            return max(used, previous.last_ms) + 1
        return max(used, previous.last_ms + previous.ttl_ms) + 1

    async def _drop(self, claim: _Claim) -> None:
        key = self._key(claim.machine_id)
        await self._call(
            "txn", self.backend.txn, [Compare(key, "create", claim.revision)], [Delete(key)]
        )

    async def _wait_for_floor(self, claim: _Claim, lease: int) -> None:
        """Wait until the clock passes ``claim.floor_ms``, keeping the lease alive."""
        wait_ms = claim.floor_ms - self.gen.now_ms()
        if wait_ms <= 0:
            return
        self.log.info("idgen.waiting_for_clock", machine_id=claim.machine_id, wait_ms=wait_ms)
        set_health(
            Health.DEGRADED,
            f"waiting {wait_ms} ms for the clock to pass machine ID {claim.machine_id}'s "
            "last timestamp",
        )
        while wait_ms > 0:
            await trio.sleep(min(wait_ms / 1000, self.interval_ns / 1e9))
            progress()
            wait_ms = claim.floor_ms - self.gen.now_ms()
            if wait_ms > 0 and await self._keepalive(lease) is None:
                raise MachineIdLost(f"lease {lease} expired while waiting for the clock")

    async def _keepalive(self, lease: int) -> int | None:
        return await self._call("lease keepalive", self.backend.lease_keepalive, lease)

    # -- keeping ---------------------------------------------------------------------
    async def renew(self) -> None:
        """Keepalive, then record our last timestamp (only while the claim is ours);
        then let the generator issue until ``sent + min(lease_ttl, TTL) - margin``."""
        gen, claim, lease = self.gen, self.claim, self.lease
        if claim is None or lease is None:
            raise MachineIdLost("no machine ID claimed")
        sent = gen.mono()
        ttl = await self._keepalive(lease)
        if ttl is None:
            raise MachineIdLost(f"etcd no longer has lease {lease} (machine ID {claim.machine_id})")
        await self._write_record(claim, lease)
        if not claim.installed:
            gen.install(claim.machine_id, claim.floor_ms)
            claim.installed = True
        gen.extend(sent + round((min(self.ttl, ttl) - self.margin) * 1e9))
        self.sent_ns = sent
        gen.flush_issued()  # the issued counter lags by at most a renewal interval
        gen.count_renewal()
        set_health(Health.OK)

    async def _write_record(self, claim: _Claim, lease: int) -> None:
        """Write our last timestamp to the claim and the record, guarded by the claim's
        create revision (still ours) and the record's mod revision (unchanged since we
        last saw it): a write of ours that etcd applies late, after a newer one, then
        fails instead of rolling ``last/<m>`` back."""
        gen = self.gen
        key, last_key = self._key(claim.machine_id), self._last_key(claim.machine_id)
        last_ms = max(gen.now_ms(), gen.last_ms, claim.floor_ms - 1)
        record = _encode(gen.owner, last_ms, self.ttl_ms)
        for _ in range(3):
            ours = [Compare(key, "create", claim.revision)]
            result = await self._call(
                "txn",
                self.backend.txn,
                [*ours, Compare(last_key, "mod", claim.record_mod)],
                [Put(key, record, lease), Put(last_key, record)],
                [Get(key), Get(last_key)],
            )
            if result.succeeded:
                claim.record_mod = result.revision
                return
            claim.record_mod = self._record_moved(claim, result)
        raise IdGenUnavailable(f"the record of machine ID {claim.machine_id} keeps changing")

    def _record_moved(self, claim: _Claim, result: TxnResult) -> int:
        """Why the guarded write failed: the claim is gone (:class:`MachineIdLost`), or
        a late write of our own moved the record (its new mod revision)."""
        claims, records = result.responses
        if not isinstance(claims, list) or not any(
            kv.create_revision == claim.revision for kv in claims
        ):
            raise MachineIdLost(f"the claim on machine ID {claim.machine_id} is gone")
        found = records[0] if isinstance(records, list) and records else None
        previous = _decode(found.value) if found is not None else None
        if found is None or previous is None or previous.owner != self.gen.owner:
            # Only the claim's owner writes the record while the claim lives: someone
            # else writes under our prefix. Give the ID up rather than trust it.
            raise MachineIdLost(
                f"the record of machine ID {claim.machine_id} was changed by another writer"
            )
        self.log.info("idgen.record_moved", machine_id=claim.machine_id, last_ms=previous.last_ms)
        return found.mod_revision

    async def keep(self) -> None:
        """Renew every ``lease_ttl / 3``; retry failures sooner; reacquire after a loss."""
        gen = self.gen
        next_ns = self.sent_ns + self.interval_ns
        failures = 0
        lapsed = False
        while True:
            now = gen.mono()
            if not lapsed and now >= gen.valid_until_ns:
                lapsed = True
                reason = (
                    f"the lease on machine ID {gen.machine_id} was not renewed within "
                    "lease_ttl - margin"
                )
                gen.invalidate(reason)
                self.log.error("idgen.lost", machine_id=gen.machine_id, reason=reason)
                idgen_event("lost", reason=reason)
                set_health(Health.FAILED, reason)
            if now < next_ns:
                until = next_ns if lapsed else min(next_ns, gen.valid_until_ns)
                await trio.sleep((until - now) / 1e9)
                continue
            progress()
            # While issuing, a renewal may not outlast the deadline: a hung etcd is
            # reported (gauge, health, log) the moment IDs stop.
            limit = math.inf if lapsed else (gen.valid_until_ns - gen.mono()) / 1e9
            try:
                with idgen_span("renew"), trio.move_on_after(limit) as scope:
                    await self.renew()
                if scope.cancelled_caught:
                    raise IdGenUnavailable("etcd did not answer before the lease deadline")
            except MachineIdLost as exc:  # the lease or the claim is gone: claim again
                self._failed("renewal", exc)
                gen.invalidate(str(exc))
                self.log.error("idgen.lost", machine_id=gen.machine_id, reason=str(exc))
                idgen_event("lost", reason=str(exc))
                self.claim = None
                await self._revoke()
                await self.acquire(first=False)
            except IdGenUnavailable as exc:
                self._failed("renewal", exc)
                next_ns = gen.mono() + round(self.backoff.delay(failures, self.rng.random()) * 1e9)
                failures += 1
                continue
            failures = 0
            lapsed = False
            next_ns = self.sent_ns + self.interval_ns

    # -- releasing -------------------------------------------------------------------
    async def release(self) -> None:
        """Record our exact last timestamp as final, free the ID, revoke the lease
        (best effort: if etcd is unreachable the lease simply expires)."""
        claim, gen = self.claim, self.gen
        self.claim = None
        if claim is not None:
            key = self._key(claim.machine_id)
            final = _encode(gen.owner, max(gen.last_ms, claim.floor_ms - 1), self.ttl_ms, True)
            try:
                await self._call(
                    "txn",
                    self.backend.txn,
                    [Compare(key, "create", claim.revision)],
                    [Put(self._last_key(claim.machine_id), final), Delete(key)],
                )
            except IdGenError as exc:
                self.log.warning("idgen.release_failed", error=str(exc))
        await self._revoke()
        if claim is not None:
            self.log.info("idgen.released", machine_id=claim.machine_id)
            idgen_event("released", machine_id=claim.machine_id)

    async def _revoke(self) -> None:
        lease, self.lease = self.lease, None
        if lease is None:
            return
        try:
            await self._call("lease revoke", self.backend.lease_revoke, lease)
        except IdGenError as exc:
            self.log.warning("idgen.revoke_failed", lease=lease, error=str(exc))
