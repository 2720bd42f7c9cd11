"""`imgsearch local up` may start again at once on the ports of a run that just stopped cleanly."""

from __future__ import annotations

import socket
import time

from imgsearch.local.stack import port_free


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
