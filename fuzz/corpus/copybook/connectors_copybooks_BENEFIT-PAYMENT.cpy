000100* BENEFIT-PAYMENT: one record per benefit payment issued, in the
000200* nightly extract BENPAY.Dyyyymmdd.Thhmmss.DAT (fixed 48-byte
000300* records, EBCDIC 037). A BENPAY...DAT.READY file is written when
000400* the extract is complete.
000500*
000600  01  BENEFIT-PAYMENT.
000700      05  BPY-CASE-NUMBER         PIC X(10).
000800      05  BPY-PROGRAM             PIC X(4).
000900          88  BPY-PROGRAM-SNAP              VALUE 'SNAP'.
001000          88  BPY-PROGRAM-TANF              VALUE 'TANF'.
001100          88  BPY-PROGRAM-LIHEAP            VALUE 'LIHP'.
001200          88  BPY-PROGRAM-CHILD-CARE        VALUE 'CCAP'.
001300      05  BPY-ISSUED-ON           PIC 9(8).
001400      05  BPY-AMOUNT              PIC S9(7)V99 COMP-3.
001500      05  BPY-STATUS              PIC X.
001600          88  BPY-STATUS-ISSUED             VALUE 'I'.
001700          88  BPY-STATUS-REDEEMED           VALUE 'R'.
001800          88  BPY-STATUS-VOIDED             VALUE 'V'.
001900          88  BPY-STATUS-RETURNED           VALUE 'X'.
002000      05  BPY-PAYMENT-ID          PIC 9(10).
002100      05  FILLER                  PIC X(10).
