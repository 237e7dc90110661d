"""The scripted console: markers, output extraction, FIFO pacing, Ctrl-A X."""

from imacpro.console import ExecSession, Keyboard, LoginExecSession, SerialInput


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


def run_command(session, serial, output: bytes) -> None:
    """The guest echoes what was typed, then prints `output`."""
    session.poll(serial)
    typed = bytes(serial.buffer)
    serial.buffer.clear()
    session.feed_output(typed.replace(b"\n", b"\r\n") + output)


def test_commands_run_in_turn_and_the_last_status_counts():
    session, serial = ExecSession(["echo a", "false"]), SerialInput()
    shown = []
    session.on_result = shown.append              # each command's output as it ends
    session.feed_output(b"IMACPRO-READY\r\n/ # ")
    run_command(session, serial, b"IMACPRO-BEGIN\r\na\r\nIMACPRO-EXIT=0\r\n/ # ")
    assert session.status is None and session.statuses == [0] and shown == [b"a\n"]
    run_command(session, serial, b"IMACPRO-BEGIN\r\nIMACPRO-EXIT=1\r\n/ # ")
    assert session.status == 1 and session.result() == b"a\n" and shown == [b"a\n", b""]
    session.poll(serial)
    assert not serial.buffer                      # nothing more to type


def test_a_command_that_reboots_ends_when_the_guest_is_ready_again():
    session, serial = ExecSession(["reboot", "uptime"]), SerialInput()
    session.feed_output(b"IMACPRO-READY\r\n/ # ")
    run_command(session, serial, b"IMACPRO-BEGIN\r\nThe system is going down NOW!\r\n")
    session.rebooted()
    session.poll(serial)
    assert not serial.buffer                      # the new boot is not ready yet
    session.feed_output(b"[    0.000000] Linux version 6.1\r\nIMACPRO-READY\r\n/ # ")
    assert session.statuses == [0] and session.status is None
    assert session.results[0] == b"The system is going down NOW!\n"
    run_command(session, serial, b"IMACPRO-BEGIN\r\nup 0:01\r\nIMACPRO-EXIT=0\r\n")
    assert session.status == 0
    assert session.result() == b"The system is going down NOW!\nup 0:01\n"


def test_a_reboot_before_the_command_was_typed_types_it_in_the_next_boot():
    session, serial = ExecSession("true"), SerialInput()
    session.feed_output(b"booting...\r\n")
    session.rebooted()
    session.feed_output(b"IMACPRO-READY\r\n")
    session.poll(serial)
    assert b"true" in bytes(serial.buffer) and session.statuses == []


def test_a_command_the_shell_never_began_before_a_reboot_is_typed_again_in_the_next_boot():
    """`sudo reboot` returns at once: the next command may be typed into a shell that is going
    down with the system and never runs it. It runs in the next boot, not counted as done."""
    session, serial = LoginExecSession(["sudo reboot", "cat sums"], "alice", "secret"), \
        SerialInput()
    log_in(session, serial)
    session.poll(serial)
    take(serial)
    session.feed_output(b"IMACPRO-BEGIN\r\nIMACPRO-EXIT=0\r\n$ ")
    session.poll(serial)
    assert b"cat sums" in take(serial)            # typed, but the shell is going down
    session.feed_output(b"\r\n[  OK  ] Stopped session-1.scope\r\n")
    session.rebooted()
    session.feed_output(b"[    0.000000] Linux version 6.1.0\r\n")
    log_in(session, serial)
    assert session.statuses == [0]                # not counted as run
    session.poll(serial)
    assert b"cat sums" in take(serial)            # typed again in the new boot
    session.feed_output(b"IMACPRO-BEGIN\r\nf1: OK\r\nIMACPRO-EXIT=0\r\n$ ")
    assert session.statuses == [0, 0] and session.result() == b"f1: OK\n"


def test_a_command_that_powers_off_completes():
    session, serial = ExecSession(["poweroff; sleep 9"]), SerialInput()
    session.feed_output(b"IMACPRO-READY\r\n")
    run_command(session, serial, b"IMACPRO-BEGIN\r\nThe system is going down NOW!\r\n")
    session.powered_off()
    assert session.status == 0 and session.result() == b"The system is going down NOW!\n"


def test_output_arriving_in_small_pieces():
    session, serial = ExecSession("seq 100000"), SerialInput()
    session.feed_output(b"IMACPRO-READY\r\n")
    session.poll(serial)
    body = b"".join(b"%d\r\n" % n for n in range(100000))
    stream = b"IMACPRO-BEGIN\r\n" + body + b"IMACPRO-EXIT=12\r\n"
    for at in range(0, len(stream), 7):           # the status's digits arrive split, too
        session.feed_output(stream[at:at + 7])
    assert session.status == 12
    assert session.result() == body.replace(b"\r\n", b"\n")


def take(serial):
    typed = bytes(serial.buffer)
    serial.buffer.clear()
    return typed


def log_in(session, serial, prompt=b"imacpro@pro:~$ "):
    session.feed_output(b"\r\nDebian GNU/Linux 12 pro ttyS0\r\n\r\npro login: ")
    session.poll(serial)
    assert take(serial) == b"alice\n"
    session.feed_output(b"alice\r\nPassword: ")
    session.poll(serial)
    assert take(serial) == b"secret\n"
    session.poll(serial)
    assert not serial.buffer                      # nothing until the shell's prompt
    session.feed_output(b"\r\nLinux pro 6.1.0-57-amd64 #1 SMP\r\n" + prompt)
    session.poll(serial)
    setup = take(serial)
    assert b"stty -echo" in setup and b"PAGER=cat" in setup
    session.feed_output(b"IMACPRO-SHELL\r\n" + prompt)


def test_login_session_logs_in_runs_the_commands_and_logs_out():
    session, serial = LoginExecSession(["uname -m", "id -u"], "alice", "secret"), SerialInput()
    session.poll(serial)
    assert not serial.buffer
    log_in(session, serial)
    for output, status in ((b"x86_64", 0), (b"1000", 0)):
        session.poll(serial)
        assert b"IMAC\"\"PRO-BEGIN" in take(serial)
        session.feed_output(b"IMACPRO-BEGIN\r\n" + output + b"\r\nIMACPRO-EXIT=%d\r\n$ " % status)
    assert session.statuses == [0, 0] and session.result() == b"x86_64\n1000\n"
    session.poll(serial)
    assert take(serial) == b"exit\n"                 # logged out after the last command
    session.poll(serial)
    assert not serial.buffer


def test_login_session_logs_in_again_after_a_reboot_and_reports_a_refused_login():
    session, serial = LoginExecSession(["reboot", "uptime"], "alice", "secret"), SerialInput()
    log_in(session, serial)
    session.poll(serial)
    take(serial)
    session.feed_output(b"IMACPRO-BEGIN\r\n")
    session.rebooted()
    assert session.status is None and session.statuses == []
    session.feed_output(b"[    0.000000] Linux version 6.1.0\r\n")
    log_in(session, serial, prompt=b"# ")         # the prompt of the next boot completes it
    assert session.statuses == [0]
    session.poll(serial)
    assert b"uptime" in take(serial)

    refused, serial = LoginExecSession("true", "alice", "wrong"), SerialInput()
    refused.feed_output(b"pro login: ")
    refused.poll(serial)
    refused.feed_output(b"alice\r\nPassword: ")
    refused.poll(serial)
    assert take(serial) == b"alice\nwrong\n"
    refused.feed_output(b"\r\nLogin incorrect\r\npro login: ")
    assert refused.status == 255 and "refused the login of 'alice'" in refused.error
    refused.poll(serial)
    assert not serial.buffer                      # no second try
