// The simulated device's scheduler: runs one kernel launch on the CPU with
// CUDA's block and thread structure (see cuda_sim.h for the model).
//
// The threads of a block are fibers (ucontext) on the launching OS thread,
// not OS threads: a barrier is then a switch back to the scheduler instead
// of a futex wake-up of every thread, which on a 2-core machine cost more
// than the kernels themselves. Blocks run one after another; within a block
// the scheduler runs each runnable fiber until it waits at a barrier or
// returns, and releases a barrier once every live thread it covers waits
// there. A thread that returns drops out, so a later __syncthreads among
// the others does not wait for it (as on sm_70 and newer). Launches are
// serialised by the caller.
#include <sys/mman.h>
#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda_sim.h"

thread_local berth_sim_dim3 threadIdx;
thread_local berth_sim_dim3 blockIdx;
thread_local berth_sim_dim3 blockDim;
thread_local berth_sim_dim3 gridDim;

namespace {

// Each fiber's stack: far more than any kernel's locals (the largest are
// the tensor-core kernels' fragment arrays, a few KiB). Mapped without
// reserving memory, so only the pages a kernel touches are committed.
constexpr size_t STACK_BYTES = 1 << 20;

enum class State { Runnable, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber {
    ucontext_t context;
    void* stack = nullptr;
    State state = State::Done;
};

struct Launch {
    void (*kernel)(void**) = nullptr;
    void** args = nullptr;
    unsigned bx = 1, by = 1;
    int threads = 0;
    std::vector<Fiber> fibers;
    std::vector<uint64_t> slots;  // one per thread, for warp exchanges
    std::vector<unsigned char> dynamic_shared;
    ucontext_t scheduler;
    int running = 0;  // the linear thread whose fiber runs now
};

thread_local Launch* current_launch = nullptr;

// Stacks outlive launches (mapping 1 MiB per thread per launch would cost
// more than small kernels): one pool per OS thread that launches, unmapped
// when that thread exits.
struct StackPool {
    std::vector<void*> stacks;
    ~StackPool() {
        for (void* s : stacks) munmap(s, STACK_BYTES);
    }
};
thread_local StackPool stack_pool;

void* stack_for(int linear) {
    while ((int)stack_pool.stacks.size() <= linear) {
        void* s = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (s == MAP_FAILED) {
            std::fprintf(stderr, "simulated device: cannot map a %zu-byte fiber stack\n", STACK_BYTES);
            std::abort();
        }
        stack_pool.stacks.push_back(s);
    }
    return stack_pool.stacks[linear];
}

// Sets the builtin index variables of linear thread `linear`.
void enter(Launch& launch, int linear) {
    launch.running = linear;
    threadIdx = {(unsigned)linear % launch.bx, ((unsigned)linear / launch.bx) % launch.by,
                 (unsigned)linear / (launch.bx * launch.by)};
}

void fiber_main() {
    Launch& launch = *current_launch;
    launch.kernel(launch.args);
    launch.fibers[launch.running].state = State::Done;
    // Returning resumes uc_link: the scheduler.
}

// The calling fiber waits in `state` until the scheduler releases it.
void wait_as(State state) {
    Launch& launch = *current_launch;
    int me = launch.running;
    launch.fibers[me].state = state;
    swapcontext(&launch.fibers[me].context, &launch.scheduler);
    enter(launch, me);  // the scheduler ran other fibers meanwhile
}

// Releases every warp whose live lanes all wait at its barrier, else the
// block barrier when every live thread waits there. Returns whether any
// fiber became runnable.
bool release(Launch& launch) {
    bool released = false;
    for (int w0 = 0; w0 < launch.threads; w0 += 32) {
        int w1 = w0 + 32 < launch.threads ? w0 + 32 : launch.threads;
        bool any = false, all = true;
        for (int t = w0; t < w1; ++t) {
            State s = launch.fibers[t].state;
            if (s == State::Done) continue;
            any = true;
            all = all && s == State::AtWarpBarrier;
        }
        if (any && all) {
            for (int t = w0; t < w1; ++t) {
                if (launch.fibers[t].state == State::AtWarpBarrier) launch.fibers[t].state = State::Runnable;
            }
            released = true;
        }
    }
    if (released) return true;
    bool any = false, all = true;
    for (const Fiber& f : launch.fibers) {
        if (f.state == State::Done) continue;
        any = true;
        all = all && f.state == State::AtBlockBarrier;
    }
    if (any && all) {
        for (Fiber& f : launch.fibers) f.state = State::Runnable;
        return true;
    }
    if (any) {
        std::fprintf(stderr,
                     "simulated device: block (%u,%u,%u) deadlocks: its threads wait at different barriers "
                     "(__syncthreads and a warp collective); a real GPU would hang\n",
                     blockIdx.x, blockIdx.y, blockIdx.z);
        std::abort();
    }
    return false;
}

// Runs the current block to completion.
void run_block(Launch& launch) {
    for (int t = 0; t < launch.threads; ++t) {
        Fiber& f = launch.fibers[t];
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack;
        f.context.uc_stack.ss_size = STACK_BYTES;
        f.context.uc_link = &launch.scheduler;
        makecontext(&f.context, fiber_main, 0);
        f.state = State::Runnable;
    }
    do {
        for (int t = 0; t < launch.threads; ++t) {
            // A fiber may run several times in one pass: each release makes
            // the waiting ones runnable again.
            while (launch.fibers[t].state == State::Runnable) {
                enter(launch, t);
                swapcontext(&launch.scheduler, &launch.fibers[t].context);
            }
        }
    } while (release(launch));
}

}  // namespace

extern "C" void berth_sim_syncthreads() { wait_as(State::AtBlockBarrier); }

extern "C" void berth_sim_syncwarp() { wait_as(State::AtWarpBarrier); }

extern "C" uint64_t berth_sim_warp_exchange(uint64_t value, int src_lane) {
    Launch& launch = *current_launch;
    int me = launch.running, warp0 = me / 32 * 32;
    launch.slots[me] = value;
    wait_as(State::AtWarpBarrier);
    int src = warp0 + (src_lane & 31);
    uint64_t got = src < launch.threads ? launch.slots[src] : 0;
    wait_as(State::AtWarpBarrier);  // every lane has read before a slot is reused
    return got;
}

extern "C" int berth_sim_warp_collective(uint64_t tag) {
    Launch& launch = *current_launch;
    int me = launch.running, warp0 = me / 32 * 32;
    launch.slots[me] = tag;
    wait_as(State::AtWarpBarrier);
    int status = 0;
    for (int lane = 0; lane < 32 && status == 0; ++lane) {
        int t = warp0 + lane;
        if (t >= launch.threads || launch.fibers[t].state == State::Done) {
            status = 2;  // fewer than 32 live lanes
        } else if (launch.slots[t] != tag) {
            status = 1;
        }
    }
    wait_as(State::AtWarpBarrier);
    return status;
}

extern "C" void* berth_sim_dynamic_shared() { return current_launch->dynamic_shared.data(); }

// Runs `kernel(args)` over the grid. Returns 0, or 1 when the launch shape is
// one a real device would refuse.
extern "C" int berth_sim_run(void (*kernel)(void**), void** args, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                             unsigned by, unsigned bz, unsigned shared_bytes) {
    unsigned long long threads = (unsigned long long)bx * by * bz;
    if (threads == 0 || threads > 1024 || gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535 ||
        shared_bytes > 227 * 1024) {
        return 1;
    }
    Launch launch;
    launch.kernel = kernel;
    launch.args = args;
    launch.bx = bx;
    launch.by = by;
    launch.threads = (int)threads;
    launch.fibers.resize(threads);
    for (int t = 0; t < launch.threads; ++t) launch.fibers[t].stack = stack_for(t);
    launch.slots.assign(threads, 0);
    // Poisoned, like uninitialised shared memory should be treated.
    launch.dynamic_shared.assign(shared_bytes + 16, 0xff);
    Launch* outer = current_launch;
    current_launch = &launch;
    blockDim = {bx, by, bz};
    gridDim = {gx, gy, gz};
    for (unsigned z = 0; z < gz; ++z) {
        for (unsigned y = 0; y < gy; ++y) {
            for (unsigned x = 0; x < gx; ++x) {
                blockIdx = {x, y, z};
                run_block(launch);
            }
        }
    }
    current_launch = outer;
    return 0;
}
