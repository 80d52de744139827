"""A checkpoint client for msm-node's application socket, in Python (docs/client-protocol.md).

    python3 msm_client.py SOCKET NAME SCHEMA [DEP...]

registers, and on the master sets keys 1..100 and waits until the backup has them; on the backup
prints the state it receives. No dependencies beyond the standard library.
"""
import socket
import struct
import sys


def message(op, payload=b""):
    return struct.pack("<IB", 1 + len(payload), op) + payload


def string(s):
    b = s.encode()
    return struct.pack("<B", len(b)) + b


class Client:
    def __init__(self, path, name, schema, deps):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        body = struct.pack("<HH", 1, schema) + string(name) + struct.pack("<B", len(deps))
        self.sock.sendall(message(0x01, body + b"".join(string(d) for d in deps)))
        op, payload = self.read()
        if op != 0x81:
            raise RuntimeError(payload.decode(errors="replace"))
        self.role, self.checkpointed = struct.unpack("<BQ", payload)

    def read(self):
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack_from("<I", self.buf)
                if len(self.buf) >= 4 + n:
                    msg, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    return msg[0], msg[1:]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the node closed the connection")
            self.buf += chunk

    def answer(self, want):
        """The next answer to a request; state and role messages before it are skipped."""
        while True:
            op, payload = self.read()
            if op == 0x83:
                raise RuntimeError(payload.decode(errors="replace"))
            if op == want:
                return payload

    def set(self, key, value):
        self.sock.sendall(message(0x02, struct.pack("<Q", key) + value))
        return struct.unpack("<Q", self.answer(0x82))[0]

    def wait(self, seq, timeout_ms):
        self.sock.sendall(message(0x04, struct.pack("<QI", seq, timeout_ms)))
        ok, done = struct.unpack("<BQ", self.answer(0x84))
        return ok == 1, done


def main():
    path, name, schema, deps = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    c = Client(path, name, schema, deps)
    if c.role == 1:
        seq = 0
        for key in range(1, 101):
            seq = c.set(key, b"value %d" % key)
        ok, done = c.wait(seq, 5000)
        print("set 100 keys; on the backup: %s (checkpointed %d)" % (ok, done))
        sys.exit(0 if ok else 1)
    while True:
        op, payload = c.read()
        if op == 0x85 and payload[0] == 1:
            print("state received: %d entries" % struct.unpack_from("<Q", payload, 1)[0])
            return


if __name__ == "__main__":
    main()
