"""The scripted console: markers, output extraction, FIFO pacing, Ctrl-A X."""

from imacpro.console import ExecSession, Keyboard, SerialInput


class FakeUart:
    def __init__(self, room=16):
        self.room = room
        self.received = bytearray()

    def rx_free(self):
        return self.room

    def feed(self, data):
        assert len(data) <= self.room
        self.received.extend(data)


def test_exec_session_types_after_ready_and_extracts_output():
    session, serial = ExecSession("uname -m"), SerialInput()
    session.poll(serial)
    assert not serial.buffer                      # nothing typed before the guest is ready
    session.feed_output(b"boot...\r\nIMACPRO-READY\r\n/ # ")
    session.poll(serial)
    typed = bytes(serial.buffer)
    assert b"uname -m" in typed and b"IMACPRO-BEGIN" not in typed
    # The shell echoes the typed line, then the command runs.
    session.feed_output(typed.replace(b"\n", b"\r\n"))
    assert session.status is None
    session.feed_output(b"IMACPRO-BEGIN\r\nx86_64\r\nIMACPRO-EXIT=3\r\n/ # ")
    assert session.status == 3
    assert session.result() == b"x86_64\n"


def test_serial_input_is_paced_by_the_fifo():
    uart, serial = FakeUart(room=16), SerialInput()
    serial.type(b"x" * 40)
    for _ in range(3):
        serial.pump(uart)
    assert bytes(uart.received) == b"x" * 40 and not serial.buffer


def test_ctrl_a_x_quits_and_ctrl_a_ctrl_a_sends_one():
    import os
    read_fd, write_fd = os.pipe()
    keyboard = Keyboard(read_fd)
    serial = SerialInput()
    keyboard.pending.put(b"ls\x01\x01\r\x01x")
    keyboard.drain(serial)
    assert bytes(serial.buffer) == b"ls\x01\r" and keyboard.quit
    os.close(write_fd)
