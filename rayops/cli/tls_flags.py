"""``rayops start``'s TLS flags: ``--tls`` with ``--tls-cert/--tls-key/--tls-ca``.

Without the three file flags, ``--tls`` takes the files from the environment
(``RAYOPS_TLS_SERVER_CERT`` ... or Ray's ``RAY_TLS_*``, see ``rpc/tls.py``); without
``--tls``, ``RAYOPS_USE_TLS=1`` (or ``RAY_USE_TLS=1``) turns TLS on the same way. The files
are read and checked before any daemon starts: a bad path is one message naming it.
"""

from __future__ import annotations

import argparse
import os

from rayops.rpc import tls

__all__ = ["add_flags", "files_from"]


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls",
        action="store_true",
        help="TLS with mutual verification on every port of this node (gRPC, data plane, "
        "HTTP); see also RAYOPS_USE_TLS",
    )
    p.add_argument("--tls-cert", help="this node's certificate (PEM), signed by the cluster CA")
    p.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    p.add_argument("--tls-ca", help="the cluster CA certificate (PEM)")


def files_from(args: argparse.Namespace) -> tls.TlsFiles | None:
    """The node's TLS files (absolute paths), checked and set for this process; None: off."""
    given = {
        "--tls-cert": args.tls_cert,
        "--tls-key": args.tls_key,
        "--tls-ca": args.tls_ca,
    }
    named = [flag for flag, value in given.items() if value]
    if named and not args.tls:
        raise tls.TlsConfigError(f"{', '.join(named)} given without --tls: add --tls")
    if args.tls and named and len(named) < len(given):
        missing = [flag for flag in given if flag not in named]
        raise tls.TlsConfigError(f"--tls needs {', '.join(missing)} too (or none of the three)")
    if args.tls and named:
        files: tls.TlsFiles | None = tls.TlsFiles(
            os.path.abspath(args.tls_cert),
            os.path.abspath(args.tls_key),
            os.path.abspath(args.tls_ca),
            origin="--tls-cert/--tls-key/--tls-ca",
        )
    else:
        env = dict(os.environ)
        if args.tls:
            env[tls.ENV_USE[0]] = "1"
            env.pop(tls.ENV_USE[1], None)
        try:
            env_files = tls.TlsFiles.from_env(env)
        except tls.TlsConfigError as err:
            if not args.tls:
                raise
            raise tls.TlsConfigError(
                f"--tls needs --tls-cert, --tls-key and --tls-ca (or the environment: {err})"
            ) from None
        files = (
            None
            if env_files is None
            else tls.TlsFiles(
                os.path.abspath(env_files.cert),
                os.path.abspath(env_files.key),
                os.path.abspath(env_files.ca),
                origin=env_files.origin,
            )
        )
    tls.configure(files)  # loads and checks them; the probes of this command use them
    return files
