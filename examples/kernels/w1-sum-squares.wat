;; W1 (tiny tasks) as a WASM kernel, bit for bit the builtin `w1-sum-squares`.
;;
;; stdin:  task index i, u64 LE (exactly 8 bytes; anything else exits 2)
;; stdout: sum of (i*1000 + k)^2 for k in 0..=999, wrapping mod 2^64, u64 LE
;; reduce: sum-u64 (wrapping sum of the task results)
(module
  (@custom "lppsp.reduce" "sum-u64")
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; 0: iovec {buf, len}; 8: count out; 16: result; 256: message; 1024: input
  (memory (export "memory") 1)
  (data (i32.const 256) "w1-sum-squares expects 8 bytes (task index u64 LE)\n")

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
    (local $base i64) (local $k i64) (local $v i64) (local $acc i64)
    ;; Ask for one byte more than needed, to tell 8 bytes from more.
    (if (i32.ne (call $read_all (i32.const 1024) (i32.const 9)) (i32.const 8))
      (then
        (call $write_all (i32.const 2) (i32.const 256) (i32.const 51))
        (call $proc_exit (i32.const 2))))
    (local.set $base (i64.mul (i64.load (i32.const 1024)) (i64.const 1000)))
    (block $done
      (loop $next
        (br_if $done (i64.ge_u (local.get $k) (i64.const 1000)))
        (local.set $v (i64.add (local.get $base) (local.get $k)))
        (local.set $acc (i64.add (local.get $acc) (i64.mul (local.get $v) (local.get $v))))
        (local.set $k (i64.add (local.get $k) (i64.const 1)))
        (br $next)))
    (i64.store (i32.const 16) (local.get $acc))
    (call $write_all (i32.const 1) (i32.const 16) (i32.const 8))))
