// The simulated device's scheduler: runs one kernel launch on the CPU with
// CUDA's block and thread structure (see cuda_sim.h for the model).
//
// A launch runs on blockDim OS threads, taken from a pool that lives as long
// as the process (creating 256 threads per launch cost more than the
// kernels). Every thread walks the grid's blocks in order; after each block
// all threads meet at a block-end barrier, so block b+1 never sees block b's
// shared memory in use. Launches are serialised by the caller.
#include <atomic>
#include <barrier>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda_sim.h"

thread_local berth_sim_dim3 threadIdx;
thread_local berth_sim_dim3 blockIdx;
thread_local berth_sim_dim3 blockDim;
thread_local berth_sim_dim3 gridDim;

namespace {

// A barrier over the threads that are still running the current block. A
// thread that returns from the kernel drops out, so a later __syncthreads
// among the others does not wait for it (as on sm_70 and newer).
//
// The live and arrived counts share one atomic word, so an arrival and a
// drop can never both miss that the barrier is complete; waiters sleep on a
// generation counter (a futex through std::atomic::wait), which wakes them
// without a mutex for all of them to queue on.
class LiveBarrier {
   public:
    void reset(int live) {
        state_.store((uint64_t)(uint32_t)live << 32, std::memory_order_release);
    }

    void arrive_and_wait() {
        uint32_t generation = generation_.load(std::memory_order_acquire);
        uint64_t state = state_.load(std::memory_order_acquire);
        for (;;) {
            uint32_t live = (uint32_t)(state >> 32), arrived = (uint32_t)state + 1;
            uint64_t next = arrived >= live ? (uint64_t)live << 32 : ((uint64_t)live << 32) | arrived;
            if (state_.compare_exchange_weak(state, next, std::memory_order_acq_rel)) {
                if (arrived >= live) {
                    release();
                    return;
                }
                break;
            }
        }
        while (generation_.load(std::memory_order_acquire) == generation) generation_.wait(generation);
    }

    // Threads still running the block (meaningful once the barrier completed).
    uint32_t live() const { return (uint32_t)(state_.load(std::memory_order_acquire) >> 32); }

    void drop() {
        uint64_t state = state_.load(std::memory_order_acquire);
        for (;;) {
            uint32_t live = (uint32_t)(state >> 32) - 1, arrived = (uint32_t)state;
            bool complete = arrived > 0 && arrived >= live;
            uint64_t next = complete ? (uint64_t)live << 32 : ((uint64_t)live << 32) | arrived;
            if (state_.compare_exchange_weak(state, next, std::memory_order_acq_rel)) {
                if (complete) release();
                return;
            }
        }
    }

   private:
    void release() {
        generation_.fetch_add(1, std::memory_order_acq_rel);
        generation_.notify_all();
    }

    std::atomic<uint64_t> state_{0};  // live << 32 | arrived
    std::atomic<uint32_t> generation_{0};
};

struct Warp {
    LiveBarrier barrier;
    uint64_t slots[32] = {};
};

struct Launch {
    LiveBarrier block_barrier;
    std::vector<std::unique_ptr<Warp>> warps;
    std::vector<unsigned char> dynamic_shared;
    int threads = 0;

    // Live-lane counts at the start of every block.
    void reset_block() {
        block_barrier.reset(threads);
        for (size_t w = 0; w < warps.size(); ++w) {
            int lanes = threads - (int)w * 32;
            warps[w]->barrier.reset(lanes < 32 ? lanes : 32);
        }
    }
};

thread_local Launch* current_launch = nullptr;
thread_local int current_linear_thread = 0;

// Worker threads that sleep between launches. Worker w runs linear thread
// w + 1 of a launch; the launching thread itself runs thread 0.
class Pool {
   public:
    // Starts body(linear) for linear = 1..threads-1 on pool workers; the
    // caller runs thread 0 itself, then calls wait().
    void start(int threads, const std::function<void(int)>& body) {
        std::lock_guard<std::mutex> lock(mutex_);
        while ((int)workers_ + 1 < threads) {
            std::thread(&Pool::loop, this, (int)workers_).detach();
            ++workers_;
        }
        body_ = &body;
        needed_ = threads - 1;
        finished_ = 0;
        ++generation_;
        start_.notify_all();
    }

    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return finished_ == needed_; });
        body_ = nullptr;
    }

   private:
    void loop(int id) {
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            start_.wait(lock, [&] { return generation_ != seen; });
            seen = generation_;
            if (id >= needed_) continue;
            const std::function<void(int)>* body = body_;
            lock.unlock();
            (*body)(id + 1);
            lock.lock();
            if (++finished_ == needed_) done_.notify_one();
        }
    }

    std::mutex mutex_;
    std::condition_variable start_, done_;
    size_t workers_ = 0;
    uint64_t generation_ = 0;
    int needed_ = 0;
    int finished_ = 0;
    const std::function<void(int)>* body_ = nullptr;
};

// Never destroyed: its detached workers outlive every static destructor.
Pool& pool() {
    static Pool* p = new Pool();
    return *p;
}

}  // namespace

extern "C" void berth_sim_syncthreads() { current_launch->block_barrier.arrive_and_wait(); }

extern "C" void berth_sim_syncwarp() {
    current_launch->warps[current_linear_thread / 32]->barrier.arrive_and_wait();
}

extern "C" uint64_t berth_sim_warp_exchange(uint64_t value, int src_lane) {
    Warp& warp = *current_launch->warps[current_linear_thread / 32];
    warp.slots[current_linear_thread % 32] = value;
    warp.barrier.arrive_and_wait();
    uint64_t got = warp.slots[src_lane & 31];
    warp.barrier.arrive_and_wait();
    return got;
}

extern "C" int berth_sim_warp_collective(uint64_t tag) {
    Warp& warp = *current_launch->warps[current_linear_thread / 32];
    warp.slots[current_linear_thread % 32] = tag;
    warp.barrier.arrive_and_wait();
    int status = warp.barrier.live() < 32 ? 2 : 0;
    for (int lane = 0; lane < 32 && status == 0; ++lane) {
        if (warp.slots[lane] != tag) status = 1;
    }
    warp.barrier.arrive_and_wait();
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
    launch.threads = (int)threads;
    for (unsigned long long w = 0; w < (threads + 31) / 32; ++w) launch.warps.push_back(std::make_unique<Warp>());
    // Poisoned, like uninitialised shared memory should be treated.
    launch.dynamic_shared.assign(shared_bytes + 16, 0xff);
    launch.reset_block();
    std::barrier block_end((std::ptrdiff_t)threads, [&launch]() noexcept { launch.reset_block(); });

    auto worker = [&](int linear) {
        current_launch = &launch;
        current_linear_thread = linear;
        threadIdx = {(unsigned)linear % bx, ((unsigned)linear / bx) % by, (unsigned)linear / (bx * by)};
        blockDim = {bx, by, bz};
        gridDim = {gx, gy, gz};
        for (unsigned z = 0; z < gz; ++z) {
            for (unsigned y = 0; y < gy; ++y) {
                for (unsigned x = 0; x < gx; ++x) {
                    blockIdx = {x, y, z};
                    kernel(args);
                    launch.block_barrier.drop();
                    launch.warps[linear / 32]->barrier.drop();
                    block_end.arrive_and_wait();
                }
            }
        }
        current_launch = nullptr;
    };
    std::function<void(int)> body = worker;
    pool().start((int)threads, body);
    worker(0);
    pool().wait();
    return 0;
}
