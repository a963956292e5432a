// SPDX-License-Identifier: GPL-2.0
/*
 * insncount: a QEMU TCG plugin that counts the guest instructions executed between two
 * markers, per translated kernel block, for make bench's `insns` workload.
 *
 *   qemu-system-x86_64 ... -plugin build/tools/insncount.so,out=FILE
 *
 * A marker is the 8-byte no-op `nopl 0x1ce1c0de(%rax,%rax,1)` (0f 1f 84 00 de c0 e1 1c),
 * which any guest process may execute (icmpflood --mark 1 does, around its round trips).
 * At each marker the plugin appends to FILE what ran since the previous one:
 *
 *   window N
 *   user INSNS                          instructions executed at user addresses
 *   VADDR NINSNS COUNT LOOKUP TSC       one line per kernel block executed COUNT times,
 *                                       LOOKUP of them not by a chained jump; TSC host
 *                                       cycles from its entries to the next block's
 *   end N
 *
 * With more than one vCPU each block line goes on with COUNT split by vCPU, one number per
 * vCPU (vCPU 0 first), so that make bench can tell the work of the CPU that answers from the
 * work of the CPU that sends.
 *
 * and starts counting again from zero; tools/bench/report.py maps VADDR to a kernel function
 * with the /proc/kallsyms the guest saved. Counting is done with inline additions that QEMU
 * compiles into the translated code, so the guest runs at nearly its usual speed. A block is
 * counted when it is entered: a block left early by an exception counts whole, which is rare
 * next to the thousands of blocks a packet runs through.
 *
 * LOOKUP is what TCG itself pays for: QEMU chains a translated block directly to
 * the next only when the jump is direct and stays on the block's page; every other entry (a
 * jump or call to another page, a return, an indirect call) goes through a lookup of the next
 * block in QEMU's tables. LOOKUP counts the entries from a block on another page or from a
 * block that ended in a return or an indirect jump or call (and from user space). They are
 * counted with a callback per kernel block executed, which is slower than the inline counts
 * but still a few seconds for a few hundred round trips.
 *
 * TSC is a time, not a count: the host's time stamp counter read at each kernel block entry,
 * charged to the block that was running. It covers what QEMU does for the block (run the
 * translated code, fill its software TLB, look up the next block) and the callback itself,
 * which costs every block alike; it says where TCG spends its time, not a CPU. A gap longer
 * than tsc_cap=N cycles (default 50000) is the host running something else (or the guest
 * idling), not the block: it is left out.
 *
 * The counters are plain 64-bit additions, not atomic. They stay exact with one vCPU, or with
 * several under single-threaded TCG (`-accel tcg,thread=single`, qemu/run's default), where
 * the vCPUs take turns on one host thread. The plugin cannot see which TCG QEMU runs, so with
 * more than one vCPU it loads only when told `single_thread=1` (at most MAX_VCPUS of them).
 *
 * QEMU's plugin API is declared below rather than included: Debian ships no qemu-plugin.h.
 * The declarations are those of API version 1, which QEMU 7.2 implements (Debian 12).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x86intrin.h>

/* --- QEMU's plugin API, version 1 (QEMU 6.0 to 8.x) --- */
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct {
	const char *target_name;
	struct {
		int min;
		int cur;
	} version;
	bool system_emulation;
	union {
		struct {
			int smp_vcpus;
			int max_vcpus;
		} system;
	};
} qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
					      void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
					  enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
					    qemu_plugin_vcpu_udata_cb_t cb,
					    enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
				    void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;
/* --- end of the API --- */

static const unsigned char marker[8] = { 0x0f, 0x1f, 0x84, 0x00, 0xde, 0xc0, 0xe1, 0x1c };

#define MAX_VCPUS 4

/* One translation of a kernel block. Translations are never freed (QEMU may drop a block and
 * translate it again; the old record then stops counting), so the inline additions always
 * point at live memory. */
struct block {
	uint64_t vaddr;
	uint64_t ninsns;
	uint64_t count;
	uint64_t vcpu_count[MAX_VCPUS];
	uint64_t lookup;
	uint64_t tsc;
	bool indirect_end;
};

#define CHUNK 4096
static struct block **chunks;
static size_t nblocks, nchunks;
static uint64_t user_insns;
/* The page of the last block executed (user space: 0), and whether it ended in an indirect
 * branch (user space: yes, the way into the kernel is an exception or a system call). */
static uint64_t last_page;
static bool last_indirect = true;
/* The kernel block running since last_tsc (NULL: user space, or a new window). */
static struct block *running;
static uint64_t last_tsc;
static uint64_t tsc_cap = 50000;
static unsigned int nvcpus = 1;

/* Charges the time since the last block entry to the block that ran. */
static inline void charge(uint64_t now)
{
	if (running && now - last_tsc <= tsc_cap)
		running->tsc += now - last_tsc;
}

static unsigned long window;
static FILE *out;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct block *new_block(void)
{
	struct block *b;

	if (nblocks == nchunks * CHUNK) {
		struct block **c = realloc(chunks, (nchunks + 1) * sizeof(*c));

		if (!c)
			return NULL;
		chunks = c;
		chunks[nchunks] = calloc(CHUNK, sizeof(struct block));
		if (!chunks[nchunks])
			return NULL;
		nchunks++;
	}
	b = &chunks[nblocks / CHUNK][nblocks % CHUNK];
	nblocks++;
	return b;
}

static void on_marker(unsigned int vcpu, void *udata)
{
	size_t i;

	(void)vcpu;
	(void)udata;
	pthread_mutex_lock(&lock);
	window++;
	fprintf(out, "window %lu\nuser %" PRIu64 "\n", window, user_insns);
	user_insns = 0;
	for (i = 0; i < nblocks; i++) {
		struct block *b = &chunks[i / CHUNK][i % CHUNK];
		unsigned int v;

		if (b->count) {
			fprintf(out, "%" PRIx64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
				b->vaddr, b->ninsns, b->count, b->lookup, b->tsc);
			for (v = 0; nvcpus > 1 && v < nvcpus; v++) {
				fprintf(out, " %" PRIu64, b->vcpu_count[v]);
				b->vcpu_count[v] = 0;
			}
			fputc('\n', out);
			b->count = 0;
			b->lookup = 0;
			b->tsc = 0;
		}
	}
	fprintf(out, "end %lu\n", window);
	running = NULL;
	fflush(out);
	pthread_mutex_unlock(&lock);
}

static void on_kernel_block(unsigned int vcpu, void *udata)
{
	struct block *b = udata;
	uint64_t page = b->vaddr >> 12, now = __rdtsc();

	if (vcpu < MAX_VCPUS)
		b->vcpu_count[vcpu]++;
	charge(now);
	running = b;
	last_tsc = now;
	if (page != last_page || last_indirect)
		b->lookup++;
	last_page = page;
	last_indirect = b->indirect_end;
}

static void on_user_block(unsigned int vcpu, void *udata)
{
	(void)vcpu;
	(void)udata;
	charge(__rdtsc());
	running = NULL;
	last_page = 0;
	last_indirect = true;
}

/* Whether an x86-64 instruction is a return, an indirect jump or call, or another way out of
 * a block that QEMU cannot chain (iret, sysret, sysexit). */
static bool ends_indirect(const unsigned char *p, size_t n)
{
	size_t i = 0;

	/* Legacy prefixes and REX. */
	while (i < n && (p[i] == 0x2e || p[i] == 0x3e || p[i] == 0x26 || p[i] == 0x36 ||
			 p[i] == 0x64 || p[i] == 0x65 || p[i] == 0x66 || p[i] == 0x67 ||
			 p[i] == 0xf0 || p[i] == 0xf2 || p[i] == 0xf3 || (p[i] & 0xf0) == 0x40))
		i++;
	if (i >= n)
		return false;
	switch (p[i]) {
	case 0xc2: case 0xc3: case 0xca: case 0xcb: case 0xcf:
		return true;
	case 0xff:
		/* ModRM reg 2 and 3: indirect call; 4 and 5: indirect jump. */
		return i + 1 < n && ((p[i + 1] >> 3) & 7) >= 2 && ((p[i + 1] >> 3) & 7) <= 5;
	case 0x0f:
		return i + 1 < n && (p[i + 1] == 0x07 || p[i + 1] == 0x35);
	}
	return false;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb), i;
	uint64_t vaddr = qemu_plugin_tb_vaddr(tb);

	(void)id;
	if (!(vaddr >> 63)) {
		/* User space: one total is enough, and the markers live here. */
		qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
							 &user_insns, n);
		qemu_plugin_register_vcpu_tb_exec_cb(tb, on_user_block, QEMU_PLUGIN_CB_NO_REGS,
						     NULL);
		for (i = 0; i < n; i++) {
			struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);

			if (qemu_plugin_insn_size(insn) == sizeof(marker) &&
			    !memcmp(qemu_plugin_insn_data(insn), marker, sizeof(marker)))
				qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker,
								       QEMU_PLUGIN_CB_NO_REGS, NULL);
		}
		return;
	}
	pthread_mutex_lock(&lock);
	struct block *b = new_block();

	if (b) {
		struct qemu_plugin_insn *last = qemu_plugin_tb_get_insn(tb, n - 1);

		b->vaddr = vaddr;
		b->ninsns = n;
		b->indirect_end = ends_indirect(qemu_plugin_insn_data(last),
						qemu_plugin_insn_size(last));
		qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count,
							 1);
		qemu_plugin_register_vcpu_tb_exec_cb(tb, on_kernel_block, QEMU_PLUGIN_CB_NO_REGS,
						     b);
	}
	pthread_mutex_unlock(&lock);
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
	(void)id;
	(void)udata;
	fclose(out);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
	const char *path = NULL;
	bool single_thread = false;
	int i;

	for (i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4))
			path = argv[i] + 4;
		else if (!strncmp(argv[i], "tsc_cap=", 8))
			tsc_cap = strtoull(argv[i] + 8, NULL, 0);
		else if (!strcmp(argv[i], "single_thread=1"))
			single_thread = true;
	if (!path) {
		qemu_plugin_outs("insncount: needs out=FILE\n");
		return -1;
	}
	if (!info->system_emulation) {
		qemu_plugin_outs("insncount: counts in a system guest only\n");
		return -1;
	}
	nvcpus = info->system.smp_vcpus;
	if (nvcpus > 1 && (!single_thread || nvcpus > MAX_VCPUS)) {
		qemu_plugin_outs("insncount: more than 1 vCPU needs single-threaded TCG and "
				 "single_thread=1 (at most 4 vCPUs)\n");
		return -1;
	}
	out = fopen(path, "w");
	if (!out) {
		qemu_plugin_outs("insncount: cannot open the out= file\n");
		return -1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
