"""`imgsearch local up`'s ports: free again at once after a clean stop, defaults that collide with nothing
a user already runs, and a message naming the port and the flag when one is taken."""

from __future__ import annotations

import socket
import time

import pytest
import typer
from typer.testing import CliRunner

from imgsearch.cli import app
from imgsearch.local.stack import API_PORT, S3_PORT, Options, port_free, port_taken


def close_server_side_first(port: int, server: socket.socket) -> None:
    client = socket.create_connection(("127.0.0.1", port))
    connection, _ = server.accept()
    connection.close()  # the server closes first, so its end of the connection waits in TIME_WAIT
    time.sleep(0.05)
    client.close()


def test_a_port_whose_old_connections_wait_in_time_wait_is_free() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every server of the stack does
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    close_server_side_first(port, server)
    server.close()

    assert port_free(port)


def test_a_port_someone_listens_on_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not port_free(server.getsockname()[1])


# --- the default ports and the message when one is taken -------------------------------------------------

# What a user of this ecosystem already runs: LocalStack (4566, and 4510-4559 for its external services),
# moto server, MinIO, ElasticMQ, DynamoDB Local, `sam local` and the usual dev servers.
WELL_KNOWN = {4566, 5000, 9000, 9001, 9324, 8000, 8080, 8081, 3000, 3001, 5173, 8888, *range(4510, 4560)}


def test_the_default_ports_collide_with_nothing_users_already_run() -> None:
    assert {S3_PORT, API_PORT}.isdisjoint(WELL_KNOWN)
    assert S3_PORT != API_PORT
    assert max(S3_PORT, API_PORT) < 32768  # below the ephemeral ranges: no outgoing connection holds them


def test_the_cli_and_the_stack_share_one_definition_of_each_default_port() -> None:
    up = typer.main.get_command(app).commands["local"].commands["up"]
    defaults = {p.name: p.default for p in up.params}

    assert (defaults["s3_port"], defaults["api_port"]) == (S3_PORT, API_PORT)
    assert (Options().s3_port, Options().api_port) == (S3_PORT, API_PORT)


def test_the_port_taken_message_names_the_port_the_flag_and_who_usually_listens() -> None:
    assert port_taken("--s3-port", 4566) == "port 4566 is in use (is LocalStack running?): pass --s3-port N"
    assert port_taken("--api-port", 12345) == "port 12345 is in use: pass --api-port N"


@pytest.mark.parametrize("flag", ["--s3-port", "--api-port"])
def test_local_up_on_a_taken_port_names_the_port_and_the_flag(flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = CliRunner().invoke(app, ["local", "up", flag, str(port)])

    assert result.exit_code == 1, result.output
    assert f"error: port {port} is in use: pass {flag} N" in result.stderr


def test_local_up_refuses_one_port_for_both_endpoints() -> None:
    result = CliRunner().invoke(app, ["local", "up", "--s3-port", "18999", "--api-port", "18999"])

    assert result.exit_code == 2
    assert "--s3-port and --api-port are both 18999" in result.stderr
