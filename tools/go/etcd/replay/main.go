// Command etcd-recover-replay applies archived revisions to an etcd data file (a bbolt snapshot DB,
// without its sha256 trailer) directly through etcd's own storage packages (mvcc, lease, backend):
// one write transaction per original revision, checked to land on that revision, no raft, no network.
// etcd-recover's point-in-time replay (packages/core/src/archive/replay.ts) streams the revisions on
// stdin in the framing below and then restores the result with etcdutl as any snapshot.
//
// Framing (big-endian): a sequence of records, each starting with one kind byte.
//
//	1 revision: u64 revision, u32 events; each event: u8 type (0 put, 1 delete), u32 key length, key;
//	  a put then: u32 value length, value, i64 lease (0: none)
//	2 lease:    i64 id, i64 ttl seconds (granted unless it exists)
//	3 end:      u64 the revision the file must be at
//
// It prints one JSON line: {"revision":R,"replayed":N}. Any failure exits non-zero naming the revision.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/coreos/go-semver/semver"
	"go.uber.org/zap"

	"go.etcd.io/etcd/pkg/v3/traceutil"
	"go.etcd.io/etcd/server/v3/lease"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
)

type fixedVersion struct{}

func (fixedVersion) Version() *semver.Version { return semver.New("3.6.0") }

func main() {
	db := flag.String("db", "", "the bbolt file to write (a snapshot DB without its trailer)")
	flag.Parse()
	if *db == "" {
		fail("--db is required")
	}
	lg := zap.NewNop()
	be := backend.NewDefaultBackend(lg, *db)
	// The lessor is never promoted: no lease expires while the replay runs.
	le := lease.NewLessor(lg, be, fixedVersion{}, lease.LessorConfig{MinLeaseTTL: 1})
	s := mvcc.NewStore(lg, be, le, mvcc.StoreConfig{})
	r := bufio.NewReaderSize(os.Stdin, 1<<20)
	var replayed int64
	rev := currentRev(s)
	for {
		kind, err := r.ReadByte()
		if err != nil {
			fail("the input ended before its end record: %v", err)
		}
		switch kind {
		case 1:
			want := int64(u64(r))
			n := u32(r)
			txn := s.Write(traceutil.TODO())
			for i := uint32(0); i < n; i++ {
				typ := u8(r)
				key := bytes(r)
				if typ == 0 {
					val := bytes(r)
					id := lease.LeaseID(int64(u64(r)))
					if id != lease.NoLease && le.Lookup(id) == nil {
						if _, err := le.Grant(id, 3600); err != nil {
							fail("revision %d: granting lease %x: %v", want, int64(id), err)
						}
					}
					txn.Put(key, val, id)
				} else {
					txn.DeleteRange(key, nil)
				}
			}
			txn.End()
			rev = currentRev(s)
			if rev != want {
				fail("revision %d of the archive became revision %d: the replay diverged", want, rev)
			}
			replayed++
		case 2:
			id := lease.LeaseID(int64(u64(r)))
			ttl := int64(u64(r))
			if le.Lookup(id) == nil {
				if _, err := le.Grant(id, ttl); err != nil {
					fail("granting lease %x: %v", int64(id), err)
				}
			}
		case 3:
			want := int64(u64(r))
			if rev != want {
				fail("the replay ends at revision %d, not %d", rev, want)
			}
			s.Commit()
			be.ForceCommit()
			le.Stop()
			if err := s.Close(); err != nil {
				fail("closing the store: %v", err)
			}
			if err := be.Close(); err != nil {
				fail("closing the backend: %v", err)
			}
			out, _ := json.Marshal(map[string]int64{"revision": rev, "replayed": replayed})
			fmt.Println(string(out))
			return
		default:
			fail("unknown record kind %d", kind)
		}
	}
}

func currentRev(s interface {
	Read(mode mvcc.ReadTxMode, trace *traceutil.Trace) mvcc.TxnRead
}) int64 {
	t := s.Read(mvcc.ConcurrentReadTxMode, traceutil.TODO())
	defer t.End()
	return t.Rev()
}

func u8(r *bufio.Reader) byte {
	b, err := r.ReadByte()
	check(err)
	return b
}

func u32(r *bufio.Reader) uint32 {
	var b [4]byte
	_, err := io.ReadFull(r, b[:])
	check(err)
	return binary.BigEndian.Uint32(b[:])
}

func u64(r *bufio.Reader) uint64 {
	var b [8]byte
	_, err := io.ReadFull(r, b[:])
	check(err)
	return binary.BigEndian.Uint64(b[:])
}

func bytes(r *bufio.Reader) []byte {
	b := make([]byte, u32(r))
	_, err := io.ReadFull(r, b)
	check(err)
	return b
}

func check(err error) {
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			fail("the input is truncated")
		}
		fail("reading the input: %v", err)
	}
}

func fail(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "etcd-recover-replay: "+f+"\n", a...)
	os.Exit(1)
}
