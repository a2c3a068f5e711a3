// The simulated device's scheduler: runs one kernel launch on the CPU with
// CUDA's block and thread structure (see cuda_sim.h for the model).
//
// A launch starts blockDim OS threads once. Every thread walks the grid's
// blocks in order; after each block all threads meet at a block-end barrier,
// so block b+1 never sees block b's shared memory in use.
#include <barrier>
#include <condition_variable>
#include <cstdint>
#include <cstring>
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
class LiveBarrier {
   public:
    void reset(int live) {
        live_ = live;
        arrived_ = 0;
    }

    void arrive_and_wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        uint64_t generation = generation_;
        if (++arrived_ >= live_) {
            release();
        } else {
            cv_.wait(lock, [&] { return generation_ != generation; });
        }
    }

    void drop() {
        std::lock_guard<std::mutex> lock(mutex_);
        --live_;
        if (arrived_ > 0 && arrived_ >= live_) release();
    }

   private:
    void release() {
        arrived_ = 0;
        ++generation_;
        cv_.notify_all();
    }

    std::mutex mutex_;
    std::condition_variable cv_;
    int live_ = 0;
    int arrived_ = 0;
    uint64_t generation_ = 0;
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
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    for (int t = 1; t < (int)threads; ++t) pool.emplace_back(worker, t);
    worker(0);
    for (auto& t : pool) t.join();
    return 0;
}
