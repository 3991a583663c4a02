package engine

import (
	"slices"

	"ordercore"
)

// sagaCache remembers sagas as the committer last wrote them, by gid and version, so the
// next outcome of a running saga is applied without reading and decoding its row again:
// the load asks the store only for the versions (ordercore.WriteTx.SagaVersions) and
// reads the rows whose version it does not hold. Every write of a saga, by this engine or
// by another instance or process, raises its version, so a saga held at the version the
// store reports is exactly the stored one. Only the committer goroutine touches it.
type sagaCache struct {
	m   map[string]ordercore.Saga
	max int
}

func newSagaCache(max int) *sagaCache {
	return &sagaCache{m: make(map[string]ordercore.Saga), max: max}
}

// get returns a copy of the saga gid if it is held at version.
func (c *sagaCache) get(gid string, version int64) (ordercore.Saga, bool) {
	s, ok := c.m[gid]
	if !ok || s.Version != version {
		return ordercore.Saga{}, false
	}
	return cloneSaga(s), true
}

// remember holds s as committed; an ended saga is let go (nothing drives it any more).
func (c *sagaCache) remember(s ordercore.Saga) {
	if s.Status.Final() {
		delete(c.m, s.GID)
		return
	}
	if _, ok := c.m[s.GID]; !ok && len(c.m) >= c.max {
		// Full: forget an arbitrary half. A forgotten saga is read from the store again.
		n := 0
		for gid := range c.m {
			if n >= c.max/2 {
				break
			}
			delete(c.m, gid)
			n++
		}
	}
	c.m[s.GID] = cloneSaga(s)
}

// cloneSaga copies what a batch changes in place: the steps. A step's calls are replaced,
// never changed in place.
func cloneSaga(s ordercore.Saga) ordercore.Saga {
	s.Steps = slices.Clone(s.Steps)
	return s
}

// rememberSagas holds every saga the committed batch b wrote, as it wrote it, and the
// sagas its claims took (the claim wrote those).
func (c *sagaCache) rememberSagas(b *batch) {
	for _, s := range b.sagas {
		if s.isNew || s.cur.Version != s.origVersion || s.claimed {
			c.remember(s.cur)
		}
	}
}
