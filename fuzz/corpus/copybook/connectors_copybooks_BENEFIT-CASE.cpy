000100* BENEFIT-CASE: benefits eligibility system, online inquiry BNQ1.
000200* Request and response records of the CICS transaction that
000300* returns every program case on one case number. The response
000400* holds up to 8 cases: BNQ-CASE-COUNT says how many follow.
000500*
000600  01  BNQ-REQUEST.
000700      05  BNQ-TRAN-CODE           PIC X(4).
000800      05  BNQ-CASE-NUMBER         PIC X(10).
000900      05  BNQ-REQUESTED-BY        PIC X(8)  VALUE 'CIVICGRF'.
001000      05  FILLER                  PIC X(18) VALUE SPACES.
001100*
001200  01  BNQ-RESPONSE.
001300      05  BNQ-RESP-TRAN-CODE      PIC X(4).
001400      05  BNQ-RETURN-CODE         PIC 9(2).
001500          88  BNQ-RC-OK                     VALUE 00.
001600          88  BNQ-RC-NOT-FOUND              VALUE 04.
001700          88  BNQ-RC-BAD-REQUEST            VALUE 08.
001800          88  BNQ-RC-SYSTEM-ERROR           VALUE 12 THRU 99.
001900      05  BNQ-RESP-CASE-NUMBER    PIC X(10).
002000      05  BNQ-CASE-COUNT          PIC S9(4) COMP.
002100      05  BNQ-CASES OCCURS 0 TO 8 TIMES
002200              DEPENDING ON BNQ-CASE-COUNT.
002300          10  BNQ-PROGRAM         PIC X(4).
002400              88  BNQ-PROGRAM-SNAP          VALUE 'SNAP'.
002500              88  BNQ-PROGRAM-TANF          VALUE 'TANF'.
002600              88  BNQ-PROGRAM-LIHEAP        VALUE 'LIHP'.
002700              88  BNQ-PROGRAM-CHILD-CARE    VALUE 'CCAP'.
002800          10  BNQ-CASE-STATUS     PIC X.
002900              88  BNQ-CASE-STATUS-OPEN      VALUE 'O'.
003000              88  BNQ-CASE-STATUS-PENDING   VALUE 'P'.
003100              88  BNQ-CASE-STATUS-SUSPENDED VALUE 'S'.
003200              88  BNQ-CASE-STATUS-CLOSED    VALUE 'C'.
003300              88  BNQ-CASE-STATUS-DENIED    VALUE 'D'.
003400          10  BNQ-OPENED-ON       PIC 9(8).
003500          10  BNQ-CLOSED-ON       PIC 9(8).
003600          10  BNQ-MONTHLY-AMOUNT  PIC S9(7)V99 COMP-3.
003700          10  BNQ-BALANCE-DUE     PIC S9(7)V99.
003800          10  BNQ-HOUSEHOLD-SIZE  PIC 9(2) COMP.
003900          10  BNQ-PAY-METHOD      PIC X.
004000              88  BNQ-PAY-METHOD-DEPOSIT    VALUE 'D'.
004100              88  BNQ-PAY-METHOD-CARD       VALUE 'E'.
004200              88  BNQ-PAY-METHOD-CHECK      VALUE 'C'.
004300          10  BNQ-PAY-DEPOSIT.
004400              15  BNQ-ACCOUNT-LAST4 PIC X(4).
004500              15  FILLER          PIC X(6).
004600          10  BNQ-PAY-CARD REDEFINES BNQ-PAY-DEPOSIT.
004700              15  BNQ-CARD-LAST4  PIC X(4).
004800              15  BNQ-CARD-ISSUED PIC 9(6).
004900          10  BNQ-PAY-CHECK REDEFINES BNQ-PAY-DEPOSIT.
005000              15  BNQ-MAIL-CODE   PIC 9(5) COMP-3.
005100              15  FILLER          PIC X(7).
005200*
005300* BNQ2: the same inquiry for up to 20 case numbers at once. The
005400* answer is BNQ-MULTI-RESPONSE followed by BNQ-M-RESULT-COUNT
005500* BNQ-RESPONSE records, one per case number asked for, in no
005600* particular order, each naming its case number and each as long
005700* as its BNQ-CASE-COUNT makes it. A request that is refused as a
005800* whole (an unknown transaction code) is answered with return
005900* code 08 in the response record of its own kind, and no results.
006000*
006100  01  BNQ-MULTI-REQUEST.
006200      05  BNQ-M-TRAN-CODE         PIC X(4).
006300      05  BNQ-M-REQUESTED-BY      PIC X(8)  VALUE 'CIVICGRF'.
006400      05  BNQ-M-KEY-COUNT         PIC S9(4) COMP.
006500      05  BNQ-M-CASE-NUMBERS      PIC X(10)
006600              OCCURS 1 TO 100 TIMES
006700              DEPENDING ON BNQ-M-KEY-COUNT.
006800*
006900  01  BNQ-MULTI-RESPONSE.
007000      05  BNQ-M-RESP-TRAN-CODE    PIC X(4).
007100      05  BNQ-M-RETURN-CODE       PIC 9(2).
007200          88  BNQ-M-RC-OK                   VALUE 00.
007300          88  BNQ-M-RC-NOT-FOUND            VALUE 04.
007400          88  BNQ-M-RC-BAD-REQUEST          VALUE 08.
007500          88  BNQ-M-RC-SYSTEM-ERROR         VALUE 12 THRU 99.
007600      05  BNQ-M-RESULT-COUNT      PIC S9(4) COMP.
