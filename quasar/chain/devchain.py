"""The local dev chain: a SQLite file that every local process (API, miners, validators) shares.

Block height follows the wall clock (one block every BLOCK_TIME_SECONDS since the chain was
created) plus an offset that `advance` raises, so tests and demos can jump ahead. It records
registrations (uid, hotkey, role, stake, optionally a coldkey) and the weights validators set; nothing is signed, since
only local processes can reach the file.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from quasar.chain.base import ChainUnavailable, Metagraph, Neuron, WeightLimits, WeightsRejected

Role = Literal["miner", "validator", "owner"]
ROLES: tuple[str, ...] = ("miner", "validator", "owner")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chain_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS neurons (
    uid INTEGER PRIMARY KEY,
    hotkey TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    stake REAL NOT NULL DEFAULT 0,
    axon_ip TEXT,
    axon_port INTEGER,
    registered_block INTEGER NOT NULL,
    coldkey TEXT
);
CREATE TABLE IF NOT EXISTS weights (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    block INTEGER NOT NULL,
    hotkey TEXT NOT NULL,
    uids TEXT NOT NULL,
    weights TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class WeightRecord:
    block: int
    hotkey: str
    uids: list[int]
    weights: list[float]


def _hotkey_of(wallet: object) -> str:
    """SS58 of a Wallet, a Keypair or a plain address string."""
    if isinstance(wallet, str):
        return wallet
    hotkey = getattr(wallet, "hotkey", wallet)
    address = getattr(hotkey, "ss58_address", None)
    if not address:
        raise TypeError(f"cannot find a hotkey address on {type(wallet).__name__}")
    return str(address)


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (readers never block the writer); it sticks to the file once set.

    SQLite answers "database is locked" at once, without waiting out the busy timeout, when two
    connections change the journal mode of a fresh file together; so retry briefly here.
    """
    deadline = time.monotonic() + 30
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class DevChain:
    """The embedded chain. Safe to use from several processes at once (SQLite WAL, busy timeout)."""

    def __init__(self, path: str | Path, *, netuid: int = 24, block_time_seconds: float = 1.0) -> None:
        self.path = Path(path)
        self.netuid = netuid
        self.block_time_seconds = block_time_seconds
        # current_block is asked on every signed API write: it reads through one kept-open
        # connection per thread, without the write lock and schema check that _connect takes.
        self._readers = threading.local()

    # --- storage ------------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ChainUnavailable(f"cannot open the dev chain at {self.path}: {exc}") from exc
        try:
            _enable_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            # Inside the write lock, so processes racing to create a fresh file take turns.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if "coldkey" not in {row[1] for row in conn.execute("PRAGMA table_info(neurons)")}:
                conn.execute("ALTER TABLE neurons ADD COLUMN coldkey TEXT")  # a file made before coldkeys
            if conn.execute("SELECT 1 FROM chain_meta WHERE key='genesis'").fetchone() is None:
                conn.execute("INSERT INTO chain_meta VALUES ('genesis', ?)", (repr(time.time()),))
                conn.execute("INSERT INTO chain_meta VALUES ('offset', '0')")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise ChainUnavailable(f"dev chain at {self.path} failed: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _file_id(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def _read_block(self) -> int:
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        # A kept connection is only good while the path still names the file it opened.
        if conn is not None and self._file_id() != self._readers.file_id:
            self._readers.conn = None
            conn.close()
            conn = None
        if conn is None:
            with self._connect():  # creates and initialises the file when it is new (or fails)
                pass
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            except sqlite3.Error as exc:
                raise ChainUnavailable(f"cannot open the dev chain at {self.path}: {exc}") from exc
            self._readers.conn, self._readers.file_id = conn, self._file_id()
        try:
            return self._block(conn, self.block_time_seconds)
        except sqlite3.Error as exc:
            self._readers.conn = None
            conn.close()
            raise ChainUnavailable(f"dev chain at {self.path} failed: {exc}") from exc

    @staticmethod
    def _block(conn: sqlite3.Connection, block_time: float) -> int:
        meta = dict(conn.execute("SELECT key, value FROM chain_meta").fetchall())
        elapsed = max(0.0, time.time() - float(meta["genesis"]))
        return math.floor(elapsed / block_time) + int(meta["offset"])

    # --- Chain protocol -----------------------------------------------------------------------
    def init(self) -> int:
        """Create the chain file if needed; returns the current block."""
        return self.current_block()

    def current_block(self) -> int:
        return self._read_block()

    def metagraph(self) -> Metagraph:
        with self._connect() as conn:
            block = self._block(conn, self.block_time_seconds)
            rows = conn.execute(
                "SELECT uid, hotkey, role, stake, axon_ip, axon_port, coldkey FROM neurons ORDER BY uid"
            ).fetchall()
        neurons = tuple(
            Neuron(
                uid=uid,
                hotkey=hotkey,
                coldkey=coldkey,
                stake=stake,
                validator_permit=role == "validator",
                axon_ip=axon_ip,
                axon_port=axon_port,
            )
            for uid, hotkey, role, stake, axon_ip, axon_port, coldkey in rows
        )
        owner = next((row[1] for row in rows if row[2] == "owner"), None)
        return Metagraph(netuid=self.netuid, block=block, neurons=neurons, owner_hotkey=owner)

    def set_weights(self, wallet: object, uids: Sequence[int], weights: Sequence[float]) -> str:
        hotkey = _hotkey_of(wallet)
        if len(uids) != len(weights):
            raise WeightsRejected("uids and weights differ in length")
        with self._connect() as conn:
            role = conn.execute("SELECT role FROM neurons WHERE hotkey=?", (hotkey,)).fetchone()
            if role is None or role[0] not in ("validator", "owner"):
                raise WeightsRejected(f"{hotkey} is not a registered validator on the dev chain")
            block = self._block(conn, self.block_time_seconds)
            conn.execute(
                "INSERT INTO weights (block, hotkey, uids, weights) VALUES (?, ?, ?, ?)",
                (block, hotkey, json.dumps(list(map(int, uids))), json.dumps(list(map(float, weights)))),
            )
        return str(block)

    def weight_limits(self) -> WeightLimits:
        """The dev chain sets no limits on weight vectors (no rate limit, any count, any share)."""
        return WeightLimits()

    # --- dev-only operations ------------------------------------------------------------------
    def register(self, hotkey: str, role: Role, *, stake: float = 0.0, coldkey: str | None = None) -> int:
        """Register (or update the role, stake and coldkey of) a hotkey; returns its uid."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        with self._connect() as conn:
            block = self._block(conn, self.block_time_seconds)
            row = conn.execute("SELECT uid FROM neurons WHERE hotkey=?", (hotkey,)).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE neurons SET role=?, stake=?, coldkey=COALESCE(?, coldkey) WHERE uid=?",
                    (role, stake, coldkey, row[0]),
                )
                return int(row[0])
            uid = conn.execute("SELECT COALESCE(MAX(uid) + 1, 0) FROM neurons").fetchone()[0]
            conn.execute(
                "INSERT INTO neurons (uid, hotkey, role, stake, registered_block, coldkey) VALUES (?, ?, ?, ?, ?, ?)",
                (uid, hotkey, role, stake, block, coldkey),
            )
            return int(uid)

    def reregister(self, uid: int, hotkey: str, role: Role = "miner") -> None:
        """Give ``uid``'s slot to another hotkey, as a real subnet does when it prunes a neuron and
        registers a new one in its place (stake and served address start afresh)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        with self._connect() as conn:
            block = self._block(conn, self.block_time_seconds)
            updated = conn.execute(
                "UPDATE neurons SET hotkey=?, role=?, stake=0, axon_ip=NULL, axon_port=NULL, coldkey=NULL, "
                "registered_block=? WHERE uid=?",
                (hotkey, role, block, uid),
            ).rowcount
        if not updated:
            raise ValueError(f"uid {uid} is not registered on the dev chain")

    def serve(self, hotkey: str, ip: str, port: int) -> None:
        """Publish a neuron's address, as ServeAxon does on a real chain."""
        with self._connect() as conn:
            updated = conn.execute(
                "UPDATE neurons SET axon_ip=?, axon_port=? WHERE hotkey=?", (ip, port, hotkey)
            ).rowcount
        if not updated:
            raise ValueError(f"{hotkey} is not registered on the dev chain")

    def serve_axon(self, wallet: object, ip: str, port: int) -> str:
        """`SubtensorChain.serve_axon`'s counterpart: publish the wallet hotkey's address."""
        self.serve(_hotkey_of(wallet), ip, port)
        return str(self.current_block())

    def roles(self) -> dict[str, str]:
        """Each registered hotkey's role (miner, validator or owner)."""
        with self._connect() as conn:
            return dict(conn.execute("SELECT hotkey, role FROM neurons").fetchall())

    def advance(self, blocks: int) -> int:
        """Move the chain `blocks` ahead of the wall clock; returns the new block."""
        if blocks < 0:
            raise ValueError("the chain only moves forward")
        with self._connect() as conn:
            conn.execute(
                "UPDATE chain_meta SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT) WHERE key='offset'",
                (blocks,),
            )
            return self._block(conn, self.block_time_seconds)

    def weights(self, hotkey: str | None = None) -> list[WeightRecord]:
        """Weights recorded on the chain, oldest first (optionally of one validator)."""
        query = "SELECT block, hotkey, uids, weights FROM weights"
        args: tuple[str, ...] = ()
        if hotkey is not None:
            query += " WHERE hotkey=?"
            args = (hotkey,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
        return [WeightRecord(b, h, json.loads(u), json.loads(w)) for b, h, u, w in rows]
