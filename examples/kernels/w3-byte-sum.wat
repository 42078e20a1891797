;; W3 (byte sum over large inputs) as a WASM kernel, bit for bit the builtin
;; `w3-byte-sum`.
;;
;; stdin:  any bytes (streamed in 64 KiB reads)
;; stdout: wrapping sum of the bytes mod 2^64, u64 LE
;; reduce: sum-u64 (wrapping sum of the task results)
;;
;; Sums 8 bytes at a time in four 16-bit lanes of an i64 (SWAR), folding the
;; lanes every 1 KiB, before any can overflow (128 words * 2 * 255 < 2^16);
;; equal to the byte-wise sum, whatever sizes the reads return.
(module
  (@custom "lppsp.reduce" "sum-u64")
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; 0: iovec {buf, len}; 8: count out; 16: result; 65536: 64 KiB buffer
  (memory (export "memory") 2)

  ;; The sum of the four 16-bit lanes of $l.
  (func $fold (param $l i64) (result i64)
    (i64.add
      (i64.add (i64.and (local.get $l) (i64.const 0xFFFF))
               (i64.and (i64.shr_u (local.get $l) (i64.const 16)) (i64.const 0xFFFF)))
      (i64.add (i64.and (i64.shr_u (local.get $l) (i64.const 32)) (i64.const 0xFFFF))
               (i64.shr_u (local.get $l) (i64.const 48)))))

  ;; The wrapping sum of the bytes in [ptr, ptr+len).
  (func $sum (param $ptr i32) (param $len i32) (result i64)
    (local $p i32) (local $words_end i32) (local $block_end i32) (local $end i32)
    (local $lanes i64) (local $w i64) (local $total i64)
    (local.set $p (local.get $ptr))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $words_end
      (i32.add (local.get $ptr) (i32.and (local.get $len) (i32.const -8))))
    ;; Whole words, a 1 KiB block at a time.
    (block $words_done
      (loop $block
        (br_if $words_done (i32.ge_u (local.get $p) (local.get $words_end)))
        (local.set $block_end (i32.add (local.get $p) (i32.const 1024)))
        (if (i32.gt_u (local.get $block_end) (local.get $words_end))
          (then (local.set $block_end (local.get $words_end))))
        (local.set $lanes (i64.const 0))
        (block $block_done
          (loop $word
            (br_if $block_done (i32.ge_u (local.get $p) (local.get $block_end)))
            (local.set $w (i64.load (local.get $p)))
            (local.set $lanes
              (i64.add (local.get $lanes)
                (i64.add (i64.and (local.get $w) (i64.const 0x00FF00FF00FF00FF))
                         (i64.and (i64.shr_u (local.get $w) (i64.const 8))
                                  (i64.const 0x00FF00FF00FF00FF)))))
            (local.set $p (i32.add (local.get $p) (i32.const 8)))
            (br $word)))
        (local.set $total (i64.add (local.get $total) (call $fold (local.get $lanes))))
        (br $block)))
    ;; The last 0-7 bytes.
    (block $bytes_done
      (loop $byte
        (br_if $bytes_done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $total
          (i64.add (local.get $total) (i64.load8_u (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $byte)))
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
    (local $n i32) (local $total i64)
    (block $eof
      (loop $chunk
        (i32.store (i32.const 0) (i32.const 65536))
        (i32.store (i32.const 4) (i32.const 65536))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $total
          (i64.add (local.get $total) (call $sum (i32.const 65536) (local.get $n))))
        (br $chunk)))
    (i64.store (i32.const 16) (local.get $total))
    (call $write_all (i32.const 1) (i32.const 16) (i32.const 8))))
