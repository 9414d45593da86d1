#include "gpu.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int gpu_probe(char *why, size_t len)
{
#ifndef HS_HAVE_CUDA
	snprintf(why, len, "built without CUDA");
	return -1;
#else
	int fds[2];
	if (pipe(fds) < 0) {
		snprintf(why, len, "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, len, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		int n = 0;
		cudaError_t e = cudaGetDeviceCount(&n);
		char msg[200];
		/* Error 35 (driver too old / no driver) means no GPU here, not
		 * a failure. */
		if (e != cudaSuccess)
			snprintf(msg, sizeof(msg), "no GPU: cudaGetDeviceCount: %s (%d)",
				 cudaGetErrorString(e), (int)e);
		else if (n == 0)
			snprintf(msg, sizeof(msg), "no GPU: no CUDA device");
		else
			msg[0] = '\0';
		ssize_t w = write(fds[1], msg, strlen(msg));
		(void)w;
		_exit(msg[0] ? 1 : 0);
	}
	close(fds[1]);
	char buf[200];
	ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	buf[n > 0 ? n : 0] = '\0';
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			break;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	snprintf(why, len, "%s", buf[0] ? buf : "no GPU: the probe died");
	return -1;
#endif
}
