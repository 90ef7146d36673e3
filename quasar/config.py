"""Every setting of the subnet, read once from the environment and `.env` (pydantic-settings).

This is the only module that reads configuration. Names match the original subnet's environment
variables where one existed (DATABASE_URL, PORT, BLOCKS_UNTIL_REVEAL, ...) so existing `.env` files
keep working; the settings new to this project are named in DESIGN §4.

Two profiles (`quasar.profiles`): `SUBTENSOR_NETWORK=embedded` (the default) runs everything on one
machine against the local dev chain with short timings; any other network (`finney`, `test`, `local`,
`ws://...`) is a real chain with production timings. A setting given explicitly always wins over the
profile. DATABASE_URL is read by `quasar.database_url`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from quasar.database_url import normalise_database_url
from quasar.profiles import (
    DEFAULT_NETUID,
    DEFAULT_NETUIDS,
    EMBEDDED_NETWORK,
    NAMED_NETWORKS,
    PROFILE_DEFAULTS,
)


class Settings(BaseSettings):
    """All settings. Field names are the lower-case form of the environment variable names."""

    # hide_input_in_errors: a refused value may be a DATABASE_URL with its password in it.
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    # --- where local state lives -------------------------------------------------------------
    quasar_home: Path = Field(
        Path(".quasar"),
        description="Directory for embedded state (database, dev chain, dev hotkeys, miner state). "
        "Relative paths are under the current directory, so two checkouts never share state.",
    )

    # --- chain ---------------------------------------------------------------------------------
    subtensor_network: str = Field(
        EMBEDDED_NETWORK,
        description="'embedded' (local dev chain), 'finney', 'test', 'archive', 'devnet', 'local' or a "
        "ws:// / wss:// URL.",
    )
    netuid: int = Field(
        DEFAULT_NETUID, description="Subnet uid on the chain (default per network: test 383, otherwise 24)."
    )
    block_time_seconds: float | None = Field(None, description="Seconds per block (embedded 1, chain 12).")
    dev_chain_path: Path | None = Field(
        None, description="SQLite file of the embedded dev chain (default QUASAR_HOME/devchain.sqlite)."
    )
    chain_retry_seconds: float = Field(5.0, description="Wait between retries when the chain is unreachable.")
    metagraph_ttl_seconds: float = Field(30.0, description="How long the API caches the metagraph.")

    # --- wallets -------------------------------------------------------------------------------
    wallet_path: Path | None = Field(
        None,
        description="Bittensor wallet directory (default ~/.bittensor/wallets; embedded: QUASAR_HOME/wallets).",
    )
    wallet_miner_name: str = "quasar_miner"
    wallet_validator_name: str = "quasar_validator"
    wallet_hotkey: str = "default"
    owner_wallet_name: str = Field("quasar_owner", description="Wallet used by `quasar round ...` (owner).")
    api_wallet_name: str = Field("quasar_api", description="Wallet whose hotkey signs as the API.")
    api_wallet_hotkey: str = "default"

    # --- Validator API -------------------------------------------------------------------------
    database_url: str | None = Field(
        None,
        description="PostgreSQL or SQLite URL; default sqlite under QUASAR_HOME. postgres://, postgresql://, "
        "postgresql+psycopg2:// and postgresql+psycopg:// all use psycopg 3.",
    )
    validator_api_url: str = "http://localhost:8000"
    host: str = "0.0.0.0"
    port: int = 8000
    owner_hotkey: str | None = Field(None, description="SS58 hotkey allowed on owner endpoints.")
    burn_uid: int = Field(0, description="uid that receives the weight nobody earned.")
    win_margin: float = Field(0.01, description="A submission counts only if speed-up >= 1 + WIN_MARGIN.")
    weight_split: list[float] = Field(
        [0.60, 0.25, 0.10, 0.05], description="Weight shares of the best distinct hotkeys, best first."
    )
    min_validator_stake: float | None = Field(
        None, description="Stake that grants the validator role without a validator permit."
    )
    evaluations_per_submission: int | None = Field(
        None, description="Validator jobs per revealed submission."
    )
    max_job_attempts: int = Field(3, description="Error verdicts before a submission ends as unevaluable.")
    job_lease_seconds: int = Field(900, description="Lease on a claimed job; extended by heartbeats.")
    blocks_until_reveal: int | None = Field(None, description="Blocks between commit and earliest reveal.")
    reveal_window_blocks: int | None = Field(
        None, description="Blocks after the reveal block a reveal is accepted."
    )
    round_blocks: int | None = Field(None, description="Length of an automatically opened round.")
    finalize_grace_blocks: int | None = Field(
        None, ge=0,
        description="Blocks past a round's end that automatic finalizing waits for its evaluations to finish.",
    )  # fmt: skip
    outlier_tolerance: float = Field(
        0.25, gt=0,
        description="A validator's speed-up further than this (relative) from the others' median is flagged.",
    )  # fmt: skip
    auto_rounds: bool | None = Field(None, description="Open and finalize rounds automatically.")
    target_sequence_length: int = Field(100_000, description="T of the benchmark shape.")
    auth_max_age_seconds: float = Field(30.0, description="Freshness window of signed requests.")
    auth_allowed_skew_seconds: float = Field(
        5.0, description="Allowed forward clock skew of signed requests."
    )
    max_body_bytes: int = Field(64 * 1024, description="Largest request body the API accepts.")
    rate_limit_per_ip_per_minute: int = Field(
        1200,
        ge=0,
        description="Requests a client IP may make per minute, per API process (0: no limit; "
        "/health, /ready and /metrics are never limited).",
    )
    rate_limit_per_hotkey_per_minute: int = Field(
        120,
        ge=0,
        description="Signed requests a hotkey may make per minute, per API process (0: no limit).",
    )
    max_commits_per_round: int = Field(
        16, ge=0, description="Commitments a miner hotkey may make in one round (0: no limit)."
    )
    api_threads: int = Field(
        8,
        ge=1,
        le=256,
        description="Threads per API worker for blocking work (database, signature checks); more "
        "threads than cores only contend for the GIL under load.",
    )
    public_cache_seconds: float = Field(
        0.0,
        ge=0,
        le=60,
        description="Serve public GET answers (rounds, leaderboard, weights, submissions) from a per-process "
        "cache this long (0: off; 1-2 s takes polling load off the database).",
    )
    allowed_repo_hosts: list[str] = Field(
        ["github.com", "gitlab.com", "huggingface.co"],
        description="Hosts a repo_url may name outside development mode.",
    )
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    # --- development / safety ------------------------------------------------------------------
    quasar_dev_mode: bool | None = Field(
        None,
        description="Allow local paths, file://, plain http and private hosts in URLs "
        "(default: on with the embedded chain, off otherwise).",
    )
    quasar_allow_unsandboxed: bool = Field(
        False,
        description="Let SANDBOX_REQUIRE=none run miner code without a sandbox where none works (never as root). "
        "Never implied by development mode.",
    )
    sandbox_require: Literal["bwrap", "namespaces", "none"] | None = Field(
        None,
        description="Isolation a run must get, else the validator claims nothing: 'bwrap' (bubblewrap; default "
        "on a real chain), 'namespaces' (bubblewrap, or the walls a root validator builds with unshare; "
        "default on the embedded chain) or 'none' (with QUASAR_ALLOW_UNSANDBOXED, never as root).",
    )

    # --- evaluation sandbox --------------------------------------------------------------------
    evaluation_timeout_seconds: float = Field(
        1800.0, description="Wall-clock limit of one sandboxed evaluation (the whole process tree is killed)."
    )
    fetch_timeout_seconds: float = Field(120.0, description="Wall-clock limit of fetching one submission.")
    sandbox_memory_mb: int = Field(
        32768,
        description="Host memory cap of a sandboxed run (cgroup memory.max; RLIMIT_AS on CPU without one).",
    )
    sandbox_max_pids: int = Field(
        1024,
        description="Tasks (processes and threads) a sandboxed run may have (cgroup pids.max / RLIMIT_NPROC).",
    )
    sandbox_cgroup_parent: str | None = Field(
        None,
        description="A cgroup v2 directory delegated to the validator (pids and memory enabled) to create "
        "per-run cgroups in; default: the validator's own cgroup, else cgroup v1 where writable.",
    )

    # --- validator neuron ----------------------------------------------------------------------
    validator_poll_seconds: float = Field(
        5.0, gt=0, description="How long the validator waits before asking again when no job is queued."
    )
    weights_version_key: int = Field(
        0,
        ge=0,
        description="version_key sent with every weight vector; the chain refuses vectors whose key is below "
        "the subnet's weights_version hyperparameter.",
    )
    weights_interval_blocks: int | None = Field(
        None,
        ge=1,
        description="Blocks between two weight settings of the validator (a tempo; embedded 20, chain 360). "
        "Weights are also set as soon as a newly finalized round changes them.",
    )
    evaluation_quick: bool = Field(
        False, description="Validators time fewer runs per evaluation (tests and local demos only)."
    )
    validator_metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the validator's Prometheus metrics (http://HOST:PORT/metrics; 0: not served).",
    )
    validator_state_dir: Path | None = Field(
        None,
        description="Where the validator keeps results not yet accepted by the API (to post them after a "
        "restart), the last weights it set (set again while the API is down) and the baseline's compiled "
        "kernels (default QUASAR_HOME/validator).",
    )

    # --- miner ---------------------------------------------------------------------------------
    github_token: str | None = None
    github_username: str | None = None
    github_fork_name: str = "flash-linear-attention"
    git_remote_url: str | None = Field(None, description="Any git remote to push to instead of GitHub.")
    git_push_url: str | None = Field(
        None,
        description="Where git pushes when that is not GIT_REMOTE_URL, e.g. over SSH (git@github.com:me/fla.git); "
        "GIT_REMOTE_URL stays the https URL revealed to validators. Default: GIT_REMOTE_URL.",
    )
    target_repo_url: str = "https://github.com/troy12x/flash-linear-attention"
    github_api_url: str = Field(
        "https://api.github.com",
        description="GitHub REST API base URL (GitHub Enterprise: https://HOST/api/v3).",
    )
    agent_iterations: int = Field(100, ge=0, description="Patches the `agent` strategy asks for per cycle.")
    optimization_interval: int = Field(300, description="Seconds between miner optimization cycles.")
    miner_inference_port: int = 8001
    docker_username: str | None = None
    miner_strategy: Literal["tune", "agent", "manual"] = Field(
        "tune",
        description="How the miner improves its kernel: 'tune' searches the kernel's knobs, 'agent' asks an "
        "LLM for patches, 'manual' submits your own edits of the workspace when they are faster.",
    )
    miner_state_dir: Path | None = Field(
        None, description="Miner state (salt, payload, phase, bench results) (default QUASAR_HOME/miner)."
    )
    miner_workspace: Path | None = Field(
        None,
        description="The miner's git checkout of its kernel repository (default MINER_STATE_DIR/workspace).",
    )
    miner_branch: str = Field("quasar-miner", description="Branch the miner commits to and pushes.")
    miner_min_speedup: float = Field(
        1.01, description="Submit only kernels whose measured speed-up over the baseline is at least this."
    )
    miner_min_improvement: float = Field(
        0.02,
        ge=0,
        description="A candidate is kept only if it is this fraction faster than the current best.",
    )
    miner_bench_quick: bool = Field(False, description="Bench candidates with fewer timed runs (`--quick`).")
    miner_bench_timeout_seconds: float = Field(
        1800.0, gt=0, description="Wall-clock limit of one candidate's bench."
    )
    miner_allow_unsandboxed_candidates: bool = Field(
        False,
        description="Where no sandbox can be built, bench candidate kernels without one (their code can then read "
        "this machine's files, the wallet included); off: the miner refuses to run them there.",
    )
    miner_external_ip: str | None = Field(
        None,
        description="Public IP of the miner's inference server, published on chain (ServeAxon) "
        "(embedded: 127.0.0.1).",
    )
    miner_inference_url: str | None = Field(
        None,
        description="inference_url revealed with each submission (default http://MINER_EXTERNAL_IP:port).",
    )
    miner_llm_base_url: str | None = Field(
        "https://api.openai.com/v1",
        description="OpenAI-compatible chat endpoint of the `agent` strategy; empty: a local transformers "
        "model named by MINER_LLM_MODEL.",
    )
    miner_llm_model: str = Field(
        "gpt-4o", description="Chat model (or local model path) of the `agent` strategy."
    )
    miner_llm_api_key: str | None = Field(None, description="API key of MINER_LLM_BASE_URL (never logged).")
    miner_llm_timeout_seconds: float = Field(300.0, gt=0, description="How long one LLM answer may take.")

    # --- verification / inference --------------------------------------------------------------
    enable_logit_verification: bool = True
    model_name: str | None = Field(None, description="Model the miner serves (HF id or local path).")
    reference_model: str | None = Field(None, description="Model validators check logits against.")
    cosine_sim_threshold: float | None = Field(None, description="Extra gate on raw-logit cosine.")
    max_abs_diff_threshold: float | None = Field(None, description="Extra gate on raw-logit max-abs-diff.")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    model_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Dtype the miner serves MODEL_NAME in ('auto': bfloat16 on CUDA, float32 on CPU)."
    )
    inference_max_input_tokens: int = Field(
        2048, ge=1, description="Longest prompt the inference server accepts."
    )
    inference_max_new_tokens: int = Field(
        256, ge=1, description="Largest max_new_tokens the inference server accepts."
    )
    inference_max_logits_positions: int = Field(
        64, ge=0, description="Most logits positions one inference request may ask for."
    )
    inference_queue_size: int = Field(
        8,
        ge=0,
        description="Requests that may wait for the device behind the running one; more get 503 busy.",
    )
    inference_rate_limit_per_minute: int = Field(
        60, ge=1, description="Inference requests per minute per validator hotkey (real chain only)."
    )
    verify_prompt_tokens: int = Field(
        32, ge=1, description="Prompt length of a logit-verification challenge."
    )
    verify_max_new_tokens: int = Field(
        32, ge=1, description="Tokens a logit-verification challenge asks for."
    )
    verify_checked_positions: int = Field(
        8, ge=1, description="Generated positions whose logits are compared."
    )
    verify_timeout_seconds: float = Field(
        120.0, gt=0, description="How long the validator waits for a miner's answer."
    )
    verify_thresholds_file: Path | None = Field(
        None,
        description="JSON thresholds per dtype from `quasar verify calibrate --write` (default: built-in).",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_netuid(cls, data: Any) -> Any:
        # Before validation, so that an explicit NETUID (even 24 on testnet) always wins.
        if isinstance(data, dict) and data.get("netuid") is None:
            network = str(data.get("subtensor_network") or EMBEDDED_NETWORK)
            data = {**data, "netuid": DEFAULT_NETUIDS.get(network, DEFAULT_NETUID)}
        return data

    @field_validator("subtensor_network")
    @classmethod
    def _known_network(cls, value: str) -> str:
        if value == EMBEDDED_NETWORK or value in NAMED_NETWORKS or value.startswith(("ws://", "wss://")):
            return value
        allowed = ", ".join((EMBEDDED_NETWORK, *NAMED_NETWORKS))
        raise ValueError(
            f"SUBTENSOR_NETWORK: {value!r} is not a network; use one of {allowed} or a ws:// / wss:// URL "
            "(e.g. SUBTENSOR_NETWORK=test)"
        )

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        return None if value is None else normalise_database_url(value)

    @model_validator(mode="after")
    def _apply_profile(self) -> Settings:
        profile = PROFILE_DEFAULTS["embedded" if self.is_embedded else "chain"]
        for name, value in profile.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.quasar_dev_mode is None:
            object.__setattr__(self, "quasar_dev_mode", self.is_embedded)
        home = self.quasar_home
        if self.database_url is None:
            object.__setattr__(self, "database_url", f"sqlite:///{home / 'validator_api.db'}")
        if self.dev_chain_path is None:
            object.__setattr__(self, "dev_chain_path", home / "devchain.sqlite")
        if self.wallet_path is None:
            wallets = home / "wallets" if self.is_embedded else Path("~/.bittensor/wallets").expanduser()
            object.__setattr__(self, "wallet_path", wallets)
        tiny = str(home / "tiny-model")
        default_model = tiny if self.is_embedded else "Qwen/Qwen2.5-0.5B-Instruct"
        if self.model_name is None:
            object.__setattr__(self, "model_name", default_model)
        if self.reference_model is None:
            object.__setattr__(self, "reference_model", default_model)
        if abs(sum(self.weight_split) - 1.0) > 1e-6 or any(w < 0 for w in self.weight_split):
            raise ValueError("WEIGHT_SPLIT must be non-negative shares that add up to 1")
        return self

    @property
    def validator_state_path(self) -> Path:
        """Where the validator keeps its state: VALIDATOR_STATE_DIR, default QUASAR_HOME/validator."""
        return (self.validator_state_dir or self.quasar_home / "validator").expanduser()

    @property
    def is_embedded(self) -> bool:
        return self.subtensor_network == EMBEDDED_NETWORK

    @property
    def dev_mode(self) -> bool:
        return bool(self.quasar_dev_mode)


class InvalidSettings(ValueError):
    """The settings cannot be read; the message is one line naming each refused variable."""


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings from the environment and `.env`, with ``overrides`` (field names: values a command
    line gave) in place of their variables; the environment itself is left as it is.

    Raises InvalidSettings with one line: the variable, what is wrong, where it came from (the
    environment or `.env`) and an example of a right value.
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return Settings(**dict(overrides or {}))
    except (ValidationError, SettingsError) as exc:
        from quasar.envfile import describe_settings_error

        raise InvalidSettings(describe_settings_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (`load_settings` without overrides). Tests build
    `Settings(...)` directly instead."""
    return load_settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (for CLIs that change the environment before reading them)."""
    get_settings.cache_clear()
