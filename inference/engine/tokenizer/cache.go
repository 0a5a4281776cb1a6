package tokenizer

import (
	"hash/maphash"
	"strings"
	"sync"
)

const (
	cacheShards = 32
	// cacheMaxKey is the longest pre-token (in bytes) worth caching: longer ones are rare
	// and would let one request fill the cache's memory.
	cacheMaxKey = 64
)

// bpeCache maps pre-tokens to their token ids. It is bounded (an arbitrary entry of a
// full shard is evicted) and safe for concurrent use; sharding keeps lock contention
// low when many requests tokenize at once.
type bpeCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string][]int
}

func newBPECache(capacity int) *bpeCache {
	c := &bpeCache{seed: maphash.MakeSeed(), perShard: max(1, capacity/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string][]int)
	}
	return c
}

func (c *bpeCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%cacheShards]
}

// get returns the cached ids; callers must not modify them.
func (c *bpeCache) get(key string) ([]int, bool) {
	s := c.shard(key)
	s.mu.RLock()
	ids, ok := s.m[key]
	s.mu.RUnlock()
	return ids, ok
}

func (c *bpeCache) put(key string, ids []int) {
	if len(key) > cacheMaxKey {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		for k := range s.m { // map iteration order is randomised: a cheap random eviction
			delete(s.m, k)
			break
		}
	}
	s.m[strings.Clone(key)] = ids // key may point into a large request body
}
