//! KV cache memory and prefix caches: vLLM's paged blocks with hash-based automatic prefix caching,
//! and SGLang's radix tree with LRU eviction.
//!
//! The simulator never sees token ids. A request's tokens are described by *identity runs*: the
//! prompt's leading [`PrefixSegment`]s (content shared between requests, e.g. a system prompt or a
//! previous turn) and then the request's own unique tail (the rest of the prompt and the output).
//! Two requests hold the same token at position `p` exactly when their segment chains agree up to
//! the segment containing `p`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast hasher for the simulator's integer keys (request ids, block hashes that are already
/// well mixed). The keys are not attacker-controlled, so SipHash's protection buys nothing here
/// and costs a good part of a step's time.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` with [`IntHasher`].
pub type HashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// A run of prompt tokens whose content is identified by `hash` (the same hash and length at the
/// same position after the same earlier segments means the same tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrefixSegment {
    pub hash: u64,
    pub tokens: u32,
}

/// 64-bit mixing (splitmix64 finaliser) so identities stay well spread.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_add(0x9e37_79b9_7f4a_7c15).wrapping_add(a << 6);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The identity runs of one request's token sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqIdentity {
    /// (identity, end position) of each shared run, in order; run k covers [end_{k-1}, end_k).
    runs: Vec<(u64, u32)>,
    /// Identity of everything after the shared runs (unique to the request).
    tail: u64,
}

impl SeqIdentity {
    /// Runs for a sequence of `len` tokens (prompt and output) starting with `segments`, cut at
    /// `len`; tokens after the segments are the request's own. Segments may cover output tokens
    /// when the caller knows what will be generated (the simulator does), so a later request
    /// whose prompt repeats this request's prompt and output shares them.
    pub fn new(request_id: u64, len: u32, segments: &[PrefixSegment]) -> SeqIdentity {
        let mut runs = Vec::with_capacity(segments.len());
        let mut chain = 0x5eed_u64;
        let mut end = 0u32;
        for s in segments {
            if end >= len || s.tokens == 0 {
                break;
            }
            chain = mix(mix(chain, s.hash), u64::from(s.tokens));
            end = end.saturating_add(s.tokens).min(len);
            runs.push((chain, end));
        }
        SeqIdentity {
            runs,
            tail: mix(0x7a11_u64, request_id),
        }
    }

    /// Identity of the run containing position `pos`, and where that run ends (`u32::MAX` for the
    /// unique tail).
    pub fn at(&self, pos: u32) -> (u64, u32) {
        // Runs are sorted by their end: the first run ending after `pos` holds it.
        let k = self.runs.partition_point(|&(_, end)| end <= pos);
        self.runs.get(k).copied().unwrap_or((self.tail, u32::MAX))
    }

    /// Hash of the block of tokens ending at `end` (exclusive): it identifies all tokens before
    /// `end`, as vLLM's chained block hashes do.
    pub fn block_hash(&self, end: u32) -> u64 {
        let (ident, _) = self.at(end.saturating_sub(1));
        mix(ident, u64::from(end))
    }
}

const NIL: u32 = u32::MAX;

/// vLLM's block pool: fixed-size blocks, a free queue in eviction order (least recently freed
/// first, a sequence's tail blocks ahead of its head), and a map from block hash to the cached
/// block. Freed blocks keep their hash and can be hit until they are reallocated.
#[derive(Debug, Clone)]
pub struct PagedKv {
    pub block_size: u32,
    ref_cnt: Vec<u32>,
    hash: Vec<Option<u64>>,
    prev: Vec<u32>,
    next: Vec<u32>,
    in_free: Vec<bool>,
    head: u32,
    tail: u32,
    free_len: usize,
    cached: HashMap<u64, u32>,
    caching: bool,
}

impl PagedKv {
    pub fn new(blocks: u32, block_size: u32, caching: bool) -> PagedKv {
        let n = blocks as usize;
        let mut kv = PagedKv {
            block_size,
            ref_cnt: vec![0; n],
            hash: vec![None; n],
            prev: vec![NIL; n],
            next: vec![NIL; n],
            in_free: vec![false; n],
            head: NIL,
            tail: NIL,
            free_len: 0,
            cached: HashMap::default(),
            caching,
        };
        for b in 0..blocks {
            kv.push_tail(b);
        }
        kv
    }

    pub fn total_blocks(&self) -> usize {
        self.ref_cnt.len()
    }

    /// Blocks not held by any request (cached-but-free ones included: they are evictable).
    pub fn free_blocks(&self) -> usize {
        self.free_len
    }

    /// Fraction of blocks held by requests (vLLM's `kv_cache_usage_perc`).
    pub fn usage(&self) -> f64 {
        let total = self.total_blocks();
        if total == 0 {
            return 0.0;
        }
        1.0 - self.free_len as f64 / total as f64
    }

    fn push_tail(&mut self, b: u32) {
        let i = b as usize;
        self.prev[i] = self.tail;
        self.next[i] = NIL;
        if self.tail != NIL {
            self.next[self.tail as usize] = b;
        } else {
            self.head = b;
        }
        self.tail = b;
        self.in_free[i] = true;
        self.free_len += 1;
    }

    fn unlink(&mut self, b: u32) {
        let i = b as usize;
        let (p, n) = (self.prev[i], self.next[i]);
        if p != NIL {
            self.next[p as usize] = n;
        } else {
            self.head = n;
        }
        if n != NIL {
            self.prev[n as usize] = p;
        } else {
            self.tail = p;
        }
        self.prev[i] = NIL;
        self.next[i] = NIL;
        self.in_free[i] = false;
        self.free_len -= 1;
    }

    /// The longest run of cached blocks for the sequence's leading full blocks, at most
    /// `max_blocks` of them.
    pub fn lookup(&self, seq: &SeqIdentity, max_blocks: u32) -> Vec<u32> {
        if !self.caching {
            return Vec::new();
        }
        let mut hit = Vec::new();
        for b in 0..max_blocks {
            let h = seq.block_hash((b + 1) * self.block_size);
            match self.cached.get(&h) {
                Some(&blk) => hit.push(blk),
                None => break,
            }
        }
        hit
    }

    /// Take a reference on cached blocks a request reuses.
    pub fn acquire(&mut self, blocks: &[u32]) {
        for &b in blocks {
            if self.ref_cnt[b as usize] == 0 && self.in_free[b as usize] {
                self.unlink(b);
            }
            self.ref_cnt[b as usize] += 1;
        }
    }

    /// Allocate `n` fresh blocks, evicting cached ones from the head of the free queue.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<u32>> {
        if self.free_len < n {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let b = self.head;
            self.unlink(b);
            if let Some(h) = self.hash[b as usize].take() {
                if self.cached.get(&h) == Some(&b) {
                    self.cached.remove(&h);
                }
            }
            self.ref_cnt[b as usize] = 1;
            out.push(b);
        }
        Some(out)
    }

    /// Record that a full block now holds the tokens identified by `h`.
    pub fn register(&mut self, block: u32, h: u64) {
        if !self.caching || self.hash[block as usize].is_some() {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.cached.entry(h) {
            e.insert(block);
            self.hash[block as usize] = Some(h);
        }
    }

    /// Drop a request's references; blocks reaching zero join the free queue tail-first so a
    /// sequence's last blocks are evicted before its shared head.
    pub fn release(&mut self, blocks: &[u32]) {
        for &b in blocks.iter().rev() {
            let r = &mut self.ref_cnt[b as usize];
            *r = r.saturating_sub(1);
            if *r == 0 && !self.in_free[b as usize] {
                self.push_tail(b);
            }
        }
    }

    /// Blocks currently holding a cached hash.
    pub fn cached_blocks(&self) -> usize {
        self.cached.len()
    }
}

const ROOT: usize = 0;

#[derive(Debug, Clone)]
struct Node {
    parent: usize,
    ident: u64,
    start: u32,
    len: u32,
    children: HashMap<(u64, u32), usize>,
    lock: u32,
    last: u64,
    in_leaves: bool,
    alive: bool,
}

/// Where a request stands in the radix tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RadixSlot {
    /// Deepest node of the request's locked path (`ROOT` when none).
    pub node: usize,
    /// Tokens of the request held in the tree (its locked path).
    pub cached: u32,
    /// Tokens allocated to the request outside the tree.
    pub private: u32,
}

impl Default for RadixSlot {
    fn default() -> Self {
        RadixSlot {
            node: ROOT,
            cached: 0,
            private: 0,
        }
    }
}

/// SGLang's token pool with a radix-tree prefix cache: one slot per token (page size 1); finished
/// requests leave their tokens in the tree; unlocked leaves are evicted least recently used first.
/// With the cache disabled (`--disable-radix-cache`) every token is private and freed at the end.
#[derive(Debug, Clone)]
pub struct RadixKv {
    nodes: Vec<Node>,
    free_ids: Vec<usize>,
    capacity: u64,
    tree_tokens: u64,
    private_tokens: u64,
    evictable_tokens: u64,
    leaves: BTreeSet<(u64, usize)>,
    clock: u64,
    enabled: bool,
}

impl RadixKv {
    pub fn new(capacity_tokens: u64, enabled: bool) -> RadixKv {
        let root = Node {
            parent: ROOT,
            ident: 0,
            start: 0,
            len: 0,
            children: HashMap::default(),
            lock: 1,
            last: 0,
            in_leaves: false,
            alive: true,
        };
        RadixKv {
            nodes: vec![root],
            free_ids: Vec::new(),
            capacity: capacity_tokens,
            tree_tokens: 0,
            private_tokens: 0,
            evictable_tokens: 0,
            leaves: BTreeSet::new(),
            clock: 0,
            enabled,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Free slots, not counting evictable cached tokens.
    pub fn available(&self) -> u64 {
        self.capacity
            .saturating_sub(self.tree_tokens + self.private_tokens)
    }

    /// Cached tokens no request holds (they can be evicted).
    pub fn evictable(&self) -> u64 {
        self.evictable_tokens
    }

    /// Tokens held by requests (SGLang's `token_usage` numerator).
    pub fn used(&self) -> u64 {
        self.tree_tokens - self.evictable_tokens + self.private_tokens
    }

    pub fn usage(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.used() as f64 / self.capacity as f64
        }
    }

    /// Tokens held in the tree (locked or not).
    pub fn tree_tokens(&self) -> u64 {
        self.tree_tokens
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn refresh_leaf(&mut self, id: usize) {
        if id == ROOT {
            return;
        }
        let n = &self.nodes[id];
        let should = n.alive && n.lock == 0 && n.children.is_empty();
        if should != n.in_leaves {
            let key = (n.last, id);
            if should {
                self.leaves.insert(key);
            } else {
                self.leaves.remove(&key);
            }
            self.nodes[id].in_leaves = should;
        }
    }

    fn touch(&mut self, id: usize, t: u64) {
        if self.nodes[id].in_leaves {
            self.leaves.remove(&(self.nodes[id].last, id));
            self.nodes[id].in_leaves = false;
        }
        self.nodes[id].last = t;
        self.refresh_leaf(id);
    }

    /// Length of the cached prefix of `seq` (at most `limit` tokens), without changing anything.
    pub fn match_len(&self, seq: &SeqIdentity, limit: u32) -> u32 {
        if !self.enabled {
            return 0;
        }
        let mut node = ROOT;
        let mut pos = 0u32;
        while pos < limit {
            let (ident, _) = seq.at(pos);
            let Some(&child) = self.nodes[node].children.get(&(ident, pos)) else {
                break;
            };
            let take = self.nodes[child].len.min(limit - pos);
            pos += take;
            if take < self.nodes[child].len {
                break;
            }
            node = child;
        }
        pos
    }

    fn new_node(&mut self, parent: usize, ident: u64, start: u32, len: u32, t: u64) -> usize {
        let node = Node {
            parent,
            ident,
            start,
            len,
            children: HashMap::default(),
            lock: 0,
            last: t,
            in_leaves: false,
            alive: true,
        };
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.nodes[id] = node;
                id
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.nodes[parent].children.insert((ident, start), id);
        self.refresh_leaf(parent);
        self.refresh_leaf(id);
        id
    }

    /// Split `id` so that its first `k` tokens become a new parent node; returns the parent.
    fn split(&mut self, id: usize, k: u32) -> usize {
        let (parent, ident, start, lock, last) = {
            let n = &self.nodes[id];
            (n.parent, n.ident, n.start, n.lock, n.last)
        };
        self.nodes[parent].children.remove(&(ident, start));
        let top = self.new_node(parent, ident, start, k, last);
        self.nodes[top].lock = lock;
        self.nodes[id].parent = top;
        self.nodes[id].start = start + k;
        self.nodes[id].len -= k;
        self.nodes[top].children.insert((ident, start + k), id);
        self.refresh_leaf(top);
        self.refresh_leaf(id);
        top
    }

    /// Walk `seq` up to `limit` tokens, splitting a partly matched node so the result ends on a
    /// node boundary; marks the path as used now. Returns (deepest node, matched tokens).
    fn walk(&mut self, seq: &SeqIdentity, limit: u32) -> (usize, u32) {
        let t = self.tick();
        let mut node = ROOT;
        let mut pos = 0u32;
        while pos < limit {
            let (ident, _) = seq.at(pos);
            let Some(&child) = self.nodes[node].children.get(&(ident, pos)) else {
                break;
            };
            let len = self.nodes[child].len;
            let take = len.min(limit - pos);
            let next = if take < len {
                self.split(child, take)
            } else {
                child
            };
            self.touch(next, t);
            pos += take;
            node = next;
            if take < len {
                break;
            }
        }
        (node, pos)
    }

    fn lock(&mut self, mut id: usize) {
        while id != ROOT {
            if self.nodes[id].lock == 0 {
                self.evictable_tokens -= u64::from(self.nodes[id].len);
            }
            self.nodes[id].lock += 1;
            self.refresh_leaf(id);
            id = self.nodes[id].parent;
        }
    }

    fn unlock(&mut self, mut id: usize) {
        while id != ROOT {
            let n = &mut self.nodes[id];
            n.lock = n.lock.saturating_sub(1);
            if n.lock == 0 {
                self.evictable_tokens += u64::from(n.len);
            }
            self.refresh_leaf(id);
            id = self.nodes[id].parent;
        }
    }

    /// Admit a request: lock its cached prefix (at most `limit` tokens). Returns its slot.
    pub fn admit(&mut self, seq: &SeqIdentity, limit: u32) -> RadixSlot {
        if !self.enabled {
            return RadixSlot::default();
        }
        let (node, cached) = self.walk(seq, limit);
        self.lock(node);
        RadixSlot {
            node,
            cached,
            private: 0,
        }
    }

    /// Evict least recently used unlocked leaves until `need` tokens are free (or nothing is
    /// left to evict).
    fn evict(&mut self, need: u64) {
        while self.available() < need {
            let Some(&(last, id)) = self.leaves.iter().next() else {
                break;
            };
            self.leaves.remove(&(last, id));
            let (parent, ident, start, len) = {
                let n = &mut self.nodes[id];
                n.in_leaves = false;
                n.alive = false;
                (n.parent, n.ident, n.start, n.len)
            };
            self.nodes[parent].children.remove(&(ident, start));
            self.tree_tokens -= u64::from(len);
            self.evictable_tokens -= u64::from(len);
            self.free_ids.push(id);
            self.refresh_leaf(parent);
        }
    }

    /// Reserve `n` more token slots for a request, evicting if needed.
    pub fn grow(&mut self, slot: &mut RadixSlot, n: u32) -> bool {
        let n64 = u64::from(n);
        if self.available() < n64 {
            self.evict(n64);
        }
        if self.available() < n64 {
            return false;
        }
        self.private_tokens += n64;
        slot.private += n;
        true
    }

    /// Move the request's first `upto` computed tokens into the tree (SGLang caches a chunked
    /// request's prefix after each chunk and a finished request's whole sequence). With `keep`
    /// the request stays locked on its new path; without, it lets go (finished).
    pub fn insert(&mut self, seq: &SeqIdentity, upto: u32, slot: &mut RadixSlot, keep: bool) {
        if !self.enabled {
            if !keep {
                self.private_tokens -= u64::from(slot.private);
                slot.private = 0;
            }
            return;
        }
        let upto = upto.min(slot.cached + slot.private);
        let (mut node, matched) = self.walk(seq, upto);
        // Tokens the tree already had beyond the request's own path were computed twice: the
        // request's copies are freed.
        let dup = matched.saturating_sub(slot.cached);
        let mut pos = matched.max(slot.cached);
        let t = self.clock;
        while pos < upto {
            let (ident, run_end) = seq.at(pos);
            let len = run_end.min(upto) - pos;
            node = self.new_node(node, ident, pos, len, t);
            self.tree_tokens += u64::from(len);
            // New nodes start unlocked: count them evictable until locked below.
            self.evictable_tokens += u64::from(len);
            pos += len;
        }
        debug_assert!(dup <= upto - slot.cached);
        let moved = upto - slot.cached;
        self.private_tokens -= u64::from(moved);
        slot.private -= moved;
        if keep {
            self.lock(node);
        }
        self.unlock(slot.node);
        slot.node = if keep { node } else { ROOT };
        slot.cached = if keep { upto } else { 0 };
        if !keep {
            self.private_tokens -= u64::from(slot.private);
            slot.private = 0;
        }
    }

    /// Let go of a request without caching what it computed (SGLang's retraction): its own
    /// tokens are freed, its cached prefix unlocked.
    pub fn release(&mut self, slot: &mut RadixSlot) {
        self.private_tokens -= u64::from(slot.private);
        if self.enabled {
            self.unlock(slot.node);
        }
        *slot = RadixSlot::default();
    }

    /// Check the bookkeeping (tests).
    pub fn check(&self) -> Result<(), String> {
        let mut tree = 0u64;
        let mut evictable = 0u64;
        for (id, n) in self.nodes.iter().enumerate() {
            if id == ROOT || !n.alive {
                continue;
            }
            tree += u64::from(n.len);
            if n.lock == 0 {
                evictable += u64::from(n.len);
            }
        }
        if tree != self.tree_tokens || evictable != self.evictable_tokens {
            return Err(format!(
                "tree {tree} vs {}, evictable {evictable} vs {}",
                self.tree_tokens, self.evictable_tokens
            ));
        }
        if self.tree_tokens + self.private_tokens > self.capacity {
            return Err("over capacity".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(hash: u64, tokens: u32) -> PrefixSegment {
        PrefixSegment { hash, tokens }
    }

    #[test]
    fn identities_agree_exactly_on_shared_segments() {
        let a = SeqIdentity::new(1, 300, &[seg(7, 100), seg(8, 50)]);
        let b = SeqIdentity::new(2, 300, &[seg(7, 100), seg(9, 50)]);
        assert_eq!(a.at(99), b.at(99));
        assert_ne!(a.at(100), b.at(100));
        assert_eq!(a.block_hash(96), b.block_hash(96));
        assert_ne!(a.block_hash(112), b.block_hash(112));
        assert_ne!(a.at(200), b.at(200));
        // A segment longer than the prompt is cut at the prompt.
        let c = SeqIdentity::new(3, 40, &[seg(7, 100)]);
        assert_eq!(c.at(39).1, 40);
    }

    #[test]
    fn paged_cache_hits_survive_release_until_eviction() {
        let mut kv = PagedKv::new(8, 16, true);
        let s = SeqIdentity::new(1, 64, &[seg(1, 64)]);
        let blocks = kv.allocate(4).unwrap();
        for (i, &b) in blocks.iter().enumerate() {
            kv.register(b, s.block_hash((i as u32 + 1) * 16));
        }
        kv.release(&blocks);
        assert_eq!(kv.free_blocks(), 8);
        let other = SeqIdentity::new(2, 64, &[seg(1, 64)]);
        assert_eq!(kv.lookup(&other, 4).len(), 4);
        // Allocating the four never-used blocks keeps the cache; four more evict the cached
        // tail blocks first.
        let a = kv.allocate(4).unwrap();
        assert_eq!(kv.lookup(&other, 4).len(), 4);
        let b = kv.allocate(2).unwrap();
        assert_eq!(kv.lookup(&other, 4).len(), 2, "tail blocks go first");
        assert!(kv.allocate(3).is_none());
        kv.release(&a);
        kv.release(&b);
    }

    #[test]
    fn radix_shares_prefixes_and_evicts_lru_leaves() {
        let mut kv = RadixKv::new(1000, true);
        let a = SeqIdentity::new(1, 300, &[seg(1, 200)]);
        let mut sa = kv.admit(&a, 299);
        assert_eq!(sa.cached, 0);
        assert!(kv.grow(&mut sa, 300));
        kv.insert(&a, 300, &mut sa, false);
        kv.check().unwrap();
        assert_eq!(kv.tree_tokens(), 300);
        assert_eq!(kv.evictable(), 300);
        assert_eq!(kv.used(), 0);

        let b = SeqIdentity::new(2, 250, &[seg(1, 200)]);
        assert_eq!(kv.match_len(&b, 249), 200);
        let mut sb = kv.admit(&b, 249);
        assert_eq!(sb.cached, 200);
        kv.check().unwrap();
        assert_eq!(kv.evictable(), 100, "a's unique tail stays evictable");
        // Needing 750 slots evicts a's tail (100) but not the locked shared prefix.
        assert!(kv.grow(&mut sb, 750));
        assert_eq!(kv.tree_tokens(), 200);
        assert!(!kv.grow(&mut sb, 200));
        kv.check().unwrap();
        kv.release(&mut sb);
        kv.check().unwrap();
        assert_eq!(kv.used(), 0);
    }

    #[test]
    fn radix_chunked_insert_keeps_the_request_locked() {
        let mut kv = RadixKv::new(1000, true);
        let a = SeqIdentity::new(1, 500, &[seg(1, 100)]);
        let mut s = kv.admit(&a, 499);
        assert!(kv.grow(&mut s, 256));
        kv.insert(&a, 256, &mut s, true);
        kv.check().unwrap();
        assert_eq!((s.cached, s.private), (256, 0));
        assert_eq!(kv.evictable(), 0);
        assert!(kv.grow(&mut s, 244));
        kv.insert(&a, 500, &mut s, false);
        kv.check().unwrap();
        assert_eq!(kv.evictable(), 500);
    }

    #[test]
    fn radix_disabled_frees_everything() {
        let mut kv = RadixKv::new(100, false);
        let a = SeqIdentity::new(1, 50, &[seg(1, 50)]);
        let mut s = kv.admit(&a, 49);
        assert!(kv.grow(&mut s, 60));
        kv.insert(&a, 60, &mut s, false);
        assert_eq!(kv.used(), 0);
        assert_eq!(kv.match_len(&a, 49), 0);
    }
}
