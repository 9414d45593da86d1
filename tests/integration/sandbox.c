/* hs-test-sandbox: runs a program under the seccomp and capability
 * restrictions of systemd/hsbrokerd.service, so the tests can prove the
 * daemon survives its own hardening without a running systemd:
 *   SystemCallFilter=@system-service + SystemCallErrorNumber=EPERM
 *       (the list is generated at build time by syscall-list.sh),
 *   SystemCallArchitectures=native,
 *   MemoryDenyWriteExecute=yes (mmap W+X, mprotect/pkey_mprotect adding X
 *       refused, as systemd's seccomp rules do),
 *   RestrictAddressFamilies=AF_UNIX (socket() of any other family refused),
 *   NoNewPrivileges=yes, CapabilityBoundingSet= (empty; effective,
 *       permitted and inheritable sets cleared too).
 * An approximation of systemd's sandbox (namespaces, mounts and the device
 * cgroup are not reproduced), precise for what a daemon's code can trip.
 *
 *   hs-test-sandbox PROGRAM [ARGS...]   (PROGRAM an absolute path) */
#include <errno.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "hs-test-sandbox: add this architecture's AUDIT_ARCH"
#endif

static const int allowed[] = {
#include "system-service-syscalls.inc"
};
#define N_ALLOWED (sizeof(allowed) / sizeof(allowed[0]))

#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define LD_ARG(i) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))

static int load(struct sock_filter *f, size_t n)
{
	struct sock_fprog prog = { .len = (unsigned short)n, .filter = f };
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* Filter 1: architecture, W^X and address families. */
static int load_rules(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
		RET(SECCOMP_RET_KILL_PROCESS),
		/* mmap with PROT_WRITE|PROT_EXEC */
		LD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 0, 4),
		LD_ARG(2),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_WRITE | PROT_EXEC, 0, 1),
		RET(SECCOMP_RET_ERRNO | EPERM),
		/* mprotect / pkey_mprotect with PROT_EXEC */
		LD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_pkey_mprotect, 0, 3),
		LD_ARG(2),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
		RET(SECCOMP_RET_ERRNO | EPERM),
		/* socket() of a family other than AF_UNIX */
		LD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
		LD_ARG(0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 1, 0),
		RET(SECCOMP_RET_ERRNO | EAFNOSUPPORT),
		RET(SECCOMP_RET_ALLOW),
	};
	return load(f, sizeof(f) / sizeof(f[0]));
}

/* Filter 2: the allow-list; everything else fails with EPERM. */
static int load_allow_list(void)
{
	size_t n = 0, cap = 2 * N_ALLOWED + 2;
	struct sock_filter *f = calloc(cap, sizeof(*f));
	if (!f)
		return -1;
	f[n++] = (struct sock_filter)LD_NR;
	for (size_t i = 0; i < N_ALLOWED; i++) {
		f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)allowed[i], 0, 1);
		f[n++] = (struct sock_filter)RET(SECCOMP_RET_ALLOW);
	}
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_ERRNO | EPERM);
	int r = load(f, n);
	free(f);
	return r;
}

static int drop_capabilities(void)
{
	/* The bounding set can only be shrunk with CAP_SETPCAP (root); an
	 * unprivileged caller has nothing to drop. */
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM)
			return -1;
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	return (int)syscall(SYS_capset, &h, d);
}

int main(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] != '/') {
		fprintf(stderr, "usage: hs-test-sandbox /PATH/TO/PROGRAM [ARGS...]\n");
		return 2;
	}
	if (drop_capabilities() < 0) {
		perror("hs-test-sandbox: dropping capabilities");
		return 2;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		perror("hs-test-sandbox: PR_SET_NO_NEW_PRIVS");
		return 2;
	}
	if (load_rules() < 0 || load_allow_list() < 0) {
		perror("hs-test-sandbox: seccomp");
		return 2;
	}
	execv(argv[1], argv + 1);
	perror("hs-test-sandbox: execv");
	return 127;
}
