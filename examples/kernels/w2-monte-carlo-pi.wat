;; W2 (Monte Carlo pi) as a WASM kernel, bit for bit the builtin
;; `w2-monte-carlo-pi`.
;;
;; stdin:  task index u64 LE, sample count u64 LE (exactly 16 bytes;
;;         anything else exits 2)
;; stdout: hits u64 LE, samples u64 LE (16 bytes)
;; reduce: w2 (sums of hits and of samples, checked)
;;
;; SplitMix64 seeded with the task index: state += 0x9E3779B97F4A7C15;
;; z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
;; z = (z ^ (z >> 27)) * 0x94D049BB133111EB; next = z ^ (z >> 31).
;; x then y are (next >> 11) * 2^-53; a hit is x*x + y*y < 1.0. WASM f64
;; arithmetic is IEEE 754 round-to-nearest without fused multiply-add,
;; as Rust's, so the hit count is exactly the native one.
(module
  (@custom "lppsp.reduce" "w2")
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; 0: iovec {buf, len}; 8: count out; 16: result; 256: message; 1024: input
  (memory (export "memory") 1)
  (data (i32.const 256)
    "w2-monte-carlo-pi expects 16 bytes (task index u64 LE, sample count u64 LE)\n")

  ;; Reads stdin into [buf, buf+cap) until full or end of input; returns the
  ;; byte count. A read error exits 1.
  (func $read_all (param $buf i32) (param $cap i32) (result i32)
    (local $total i32) (local $n i32)
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (local.get $total) (local.get $cap)))
        (i32.store (i32.const 0) (i32.add (local.get $buf) (local.get $total)))
        (i32.store (i32.const 4) (i32.sub (local.get $cap) (local.get $total)))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br $more)))
    (local.get $total))

  ;; Writes [buf, buf+len) to fd; a write error exits 1.
  (func $write_all (param $fd i32) (param $buf i32) (param $len i32)
    (local $n i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $buf))
        (i32.store (i32.const 4) (local.get $len))
        (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $n (i32.load (i32.const 8)))
        (local.set $buf (i32.add (local.get $buf) (local.get $n)))
        (local.set $len (i32.sub (local.get $len) (local.get $n)))
        (br $more))))

  (func (export "_start")
    (local $state i64) (local $left i64) (local $hits i64) (local $z i64)
    (local $x f64) (local $y f64)
    ;; Ask for one byte more than needed, to tell 16 bytes from more.
    (if (i32.ne (call $read_all (i32.const 1024) (i32.const 17)) (i32.const 16))
      (then
        (call $write_all (i32.const 2) (i32.const 256) (i32.const 76))
        (call $proc_exit (i32.const 2))))
    (local.set $state (i64.load (i32.const 1024)))
    (local.set $left (i64.load (i32.const 1032)))
    (block $done
      (loop $sample
        (br_if $done (i64.eqz (local.get $left)))
        ;; x: one SplitMix64 step
        (local.set $state (i64.add (local.get $state) (i64.const 0x9E3779B97F4A7C15)))
        (local.set $z (local.get $state))
        (local.set $z (i64.mul (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 30)))
                               (i64.const 0xBF58476D1CE4E5B9)))
        (local.set $z (i64.mul (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 27)))
                               (i64.const 0x94D049BB133111EB)))
        (local.set $z (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 31))))
        (local.set $x (f64.mul (f64.convert_i64_u (i64.shr_u (local.get $z) (i64.const 11)))
                               (f64.const 0x1p-53)))
        ;; y: the next step
        (local.set $state (i64.add (local.get $state) (i64.const 0x9E3779B97F4A7C15)))
        (local.set $z (local.get $state))
        (local.set $z (i64.mul (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 30)))
                               (i64.const 0xBF58476D1CE4E5B9)))
        (local.set $z (i64.mul (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 27)))
                               (i64.const 0x94D049BB133111EB)))
        (local.set $z (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 31))))
        (local.set $y (f64.mul (f64.convert_i64_u (i64.shr_u (local.get $z) (i64.const 11)))
                               (f64.const 0x1p-53)))
        (local.set $hits
          (i64.add (local.get $hits)
            (i64.extend_i32_u
              (f64.lt (f64.add (f64.mul (local.get $x) (local.get $x))
                               (f64.mul (local.get $y) (local.get $y)))
                      (f64.const 1)))))
        (local.set $left (i64.sub (local.get $left) (i64.const 1)))
        (br $sample)))
    (i64.store (i32.const 16) (local.get $hits))
    (i64.store (i32.const 24) (i64.load (i32.const 1032)))
    (call $write_all (i32.const 1) (i32.const 16) (i32.const 16))))
